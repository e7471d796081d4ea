"""The review page: plain HTML whose pictures are ``<img src>`` URLs rendered on the server (a first
view works without JavaScript; forms do the rest), and a small inline script that updates the
pictures in place, polls training and render progress, and takes drag-and-drop uploads."""

from __future__ import annotations

import json
from html import escape
from typing import Any
from urllib.parse import urlencode

from grade.review.session import ReviewSession

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#1b1c1e;color:#ddd}
header{display:flex;gap:1em;align-items:baseline;padding:.6em 1em;background:#111}
h1{font-size:1.1em;margin:0}h2{font-size:1em;margin:.8em 0 .3em}
a{color:#8cf}main{padding:0 1em 2em}
.row{display:flex;gap:1em;flex-wrap:wrap;align-items:flex-start}
figure{margin:0}figcaption{font-size:.85em;color:#aaa}
#refs img{max-height:150px;border:1px solid #333}
#shots a{display:inline-block;margin-right:.5em;text-decoration:none;color:#bbb;border:2px solid transparent}
#shots a.current{border-color:#8cf}#shots img{display:block;height:72px}
#viewer img{width:min(100%,960px);height:auto;display:block;background:#000}
#scopes img{width:256px;height:auto;background:#000;border:1px solid #333}
#scopes td{padding:2px 4px;vertical-align:top}
form{margin:.4em 0}fieldset{border:1px solid #333;margin:.5em 0;padding:.4em .8em}
input[type=range]{width:22em;vertical-align:middle}
.msg{padding:.4em .8em;background:#332;border-left:3px solid #dc6}
.err{background:#322;border-left-color:#e66}
#drop{border:2px dashed #555;padding:1em;text-align:center;color:#999}
#drop.over{border-color:#8cf;color:#8cf}
progress{width:16em;vertical-align:middle}
"""


def _url(path: str, token: str, **params: Any) -> str:
    """A URL of ours with the token and the given query parameters (None left out), HTML-escaped."""
    query = {k: v for k, v in params.items() if v is not None}
    query["token"] = token
    return escape(f"{path}?{urlencode(query)}")


def _options(items: list[tuple[str, str]], selected: str) -> str:
    return "".join(
        f'<option value="{escape(v)}"{" selected" if v == selected else ""}>{escape(label)}</option>'
        for v, label in items
    )


def render_page(
    session: ReviewSession,
    token: str,
    clip: str | None = None,
    shot: int = 0,
    frame: int | None = None,
    position: float = 0.5,
    message: str | None = None,
    error: bool = False,
) -> str:
    """The whole page for ``clip`` (default: the first) and its shot ``shot`` (KeyError if unknown)."""
    clips = session.clips()
    if clip is None and clips:
        clip = clips[0].id
    parts: list[str] = []
    title = "grade review"
    if message:
        parts.append(f'<p class="msg{" err" if error else ""}" id="message">{escape(message)}</p>')
    else:
        parts.append('<p class="msg" id="message" hidden></p>')
    busy = any(j.state in ("queued", "running") for j in session.jobs.values())
    if clip is not None:
        media = session.get(clip, "clip")
        title = f"grade review: {media.name}"
        parts.append(_clip_section(session, token, clip, shot, frame, position))
    else:
        parts.append("<p>No clip yet: upload one below.</p>")
    parts.append(_upload_section(token))
    nav = " ".join(
        f'<a href="{_url("/", token, clip=m.id)}"{" aria-current=page" if m.id == clip else ""}>{escape(m.name)}</a>'
        for m in clips
    )
    refresh = '<noscript><meta http-equiv="refresh" content="3"></noscript>' if busy else ""
    state = {"token": token, "clip": clip, "shot": shot}
    script = SCRIPT.replace("__STATE__", json.dumps(state).replace("<", "\\u003c"))
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width">{refresh}<style>{CSS}</style></head><body>'
        f"<header><h1>grade review</h1><nav>{nav}</nav></header><main>{''.join(parts)}</main>"
        f"<script>{script}</script></body></html>"
    )


def _clip_section(session: ReviewSession, token: str, clip: str, shot: int, frame: int | None, position: float) -> str:
    shots = session.shot_list(clip).shots
    s = session.shot(clip, shot)
    index = session.check_frame(clip, shot, frame)
    choice = session.choice(clip, shot)
    _, look_state, train_job = session.look(clip, shot)
    looks = session.looks()
    out: list[str] = []

    refs = "".join(
        f'<figure><img alt="reference {escape(m.name)}" src="{_url("/image/reference.jpg", token, id=m.id)}">'
        f"<figcaption>{escape(m.name)}{' (in use)' if m.id == choice.look else ''}</figcaption></figure>"
        if m.picture is not None
        else f"<figure><figcaption>{escape(m.name)} (a LUT: no picture)</figcaption></figure>"
        for m in looks
    )
    out.append(f'<h2>Reference</h2><section id="refs" class="row">{refs}</section>')

    strip = "".join(
        f'<a href="{_url("/", token, clip=clip, shot=x.index)}" class="{"current" if x.index == shot else ""}" '
        f'data-shot="{x.index}"><img alt="shot {x.index + 1}" '
        f'src="{_url("/image/thumb.jpg", token, clip=clip, shot=x.index)}">'
        f"shot {x.index + 1} · {escape(x.start_tc)}–{escape(x.end_tc)}{' · flat' if x.flat else ''}</a>"
        for x in shots
    )
    out.append(f'<h2>Shots</h2><section id="shots">{strip}</section>')

    h, w = session.frame(clip, index).shape[:2]
    view = _url("/image/view.jpg", token, clip=clip, shot=shot, kind="wipe", frame=index, pos=f"{position:.3f}")
    colour = session.pipeline(clip, choice)
    managed = (
        f'<p id="colour">colour managed: {escape(colour.input)} → working {escape(colour.working)} → '
        f"{escape(colour.output)} (before and after as the render writes them)</p>"
        if colour is not None
        else ""
    )
    out.append(
        f'<h2>Shot {shot + 1}: before | after</h2>{managed}<section id="viewer">'
        f'<img id="wipe" alt="before (left) and after (right)" width="{w}" height="{h}" src="{view}"></section>'
    )
    out.append(
        f'<form id="wipe-form" method="get" action="/"><input type="hidden" name="token" value="{escape(token)}">'
        f'<input type="hidden" name="clip" value="{escape(clip)}"><input type="hidden" name="shot" value="{shot}">'
        f'<label>wipe <input type="range" id="pos" name="pos" min="0" max="1" step="0.001" value="{position:.3f}">'
        f'</label> <label>frame <input type="range" id="frame" name="frame" min="{s.start}" '
        f'max="{s.end - 1}" step="1" value="{index}"></label> <output id="frame-out">{index}</output> '
        f'(key frame {s.key_frame}, {escape(s.key_tc)}) <button id="wipe-go">show</button></form>'
    )

    rows = []
    for which in ("before", "after", "reference"):
        if which == "reference" and session.reference_picture(choice.look) is None:
            continue
        cells = "".join(
            f'<td><img class="scope" data-which="{which}" data-scope="{kind}" alt="{kind} {which}" '
            f'src="{_url("/image/scope.png", token, clip=clip, shot=shot, frame=index, which=which, scope=kind)}"></td>'
            for kind in ("waveform", "parade", "vectorscope")
        )
        rows.append(f"<tr><th>{which}</th>{cells}</tr>")
    out.append(
        '<h2>Scopes</h2><table id="scopes"><tr><th></th><th>waveform (luma)</th><th>RGB parade</th>'
        f"<th>vectorscope (skin line at 123°)</th></tr>{''.join(rows)}</table>"
    )

    fixed = session.get(choice.look, "look").kind == "look"
    radios = "".join(
        f'<label><input type="radio" name="mode" value="{m}"{" checked" if choice.mode == m else ""}'
        f"{' disabled' if fixed else ''}> {m}</label> "
        for m in ("fast", "learned")
    )
    pct = round(100 * train_job.fraction) if train_job is not None else 0
    train = (
        f'· look: <span id="look-state">{escape(look_state)}</span> '
        f'<progress id="train-progress" max="1" value="{train_job.fraction if train_job else 0:.3f}"'
        f"{'' if look_state == 'training' else ' hidden'}>{pct}%</progress>"
    )
    job_attr = f' data-job="{escape(train_job.id)}"' if train_job is not None and look_state == "training" else ""
    out.append(
        f'<h2>Look of shot {shot + 1}</h2><form id="controls" method="post"{job_attr} '
        f'action="{_url("/shot", token, clip=clip, shot=shot)}"><fieldset>'
        f'<label>reference <select name="look" id="look">'
        f"{_options([(m.id, m.name) for m in looks], choice.look)}</select></label> "
        f"mode: {radios}{train}<br>"
        f'<label>strength <input type="range" id="strength" name="strength" min="0" max="1" step="0.01" '
        f'value="{choice.strength:.2f}"></label> <output id="strength-out">{choice.strength:.2f}</output><br>'
        f'<label>regional <input type="range" id="regional" name="regional" min="0" max="1" step="0.05" '
        f'value="{choice.regional:.2f}"{" disabled" if choice.mode == "fast" and not fixed else ""}></label> '
        f'<output id="regional-out">{choice.regional:.2f}</output> (learned looks)<br>'
        f'<label><input type="checkbox" name="all_shots" id="all-shots" value="true" checked> all shots</label> '
        f'<button id="apply">apply</button></fieldset></form>'
    )

    render_jobs = [j for j in session.jobs.values() if j.kind == "render"]
    last = render_jobs[-1] if render_jobs else None
    status = ""
    if last is not None:
        link = (
            f' <a id="output-link" href="{_url("/output", token, id=last.id)}">{escape(last.output.name)}</a>'
            if (last.state == "done" and last.output is not None)
            else ""
        )
        status = f"{escape(last.state)} {escape(last.stage)} {escape(last.message)}{link}"
    running = last is not None and last.state in ("queued", "running")
    render_attr = f' data-job="{escape(last.id)}"' if running else ""
    m = session.get(clip, "clip")
    target = m.output or m.path.parent / f"{m.path.stem}.graded{m.path.suffix}"  # grade's default
    where = f" → {escape(target.name if m.uploaded else str(target))}"
    out.append(
        f'<h2>Render and presets</h2><form id="render" method="post" action="{_url("/render", token, clip=clip)}"'
        f"{render_attr}>"
        f'<button id="render-go">render the clip{where}</button> <label><input type="checkbox" name="overwrite" '
        f'value="true"> overwrite</label> <progress id="render-progress" max="1" value="'
        f'{last.fraction if last else 0:.3f}"{"" if last and last.state == "running" else " hidden"}></progress> '
        f'<span id="render-state">{status}</span></form>'
        f'<form id="preset" method="post" action="{_url("/preset", token, clip=clip, shot=shot)}">'
        f'<label>preset name <input name="name" id="preset-name" pattern="[A-Za-z0-9][A-Za-z0-9_.+-]*" '
        f'maxlength="64" required></label> <label><input type="checkbox" name="force" value="true"> replace</label> '
        f'<button id="preset-go">save preset</button> or <a id="preset-download" '
        f'href="{_url("/preset.gpreset", token, clip=clip, shot=shot)}">download shot {shot + 1}\'s look '
        "(.gpreset)</a></form>"
    )
    return "".join(out)


def _upload_section(token: str) -> str:
    return (
        f'<h2>Upload</h2><form id="upload" method="post" enctype="multipart/form-data" '
        f'action="{_url("/upload", token)}"><div id="drop">drop a clip and/or a reference still here, or '
        '<label>clip <input type="file" name="clip" accept="video/*,.mkv,.mxf,.nut"></label> '
        '<label>reference <input type="file" name="reference" accept="image/*,.cube"></label> '
        '<button id="upload-go">upload</button></div></form>'
    )


SCRIPT = r"""
(() => {
const S = __STATE__;
const $ = (id) => document.getElementById(id);
const msg = (text, err) => { const m = $("message"); if (!m) return; m.hidden = !text;
  m.textContent = text || ""; m.className = "msg" + (err ? " err" : ""); };
let version = 0;
const setParam = (img, changes) => { const u = new URL(img.src, location.href);
  for (const [k, v] of Object.entries(changes)) u.searchParams.set(k, v); img.src = u.pathname + u.search; };
const refresh = () => { version += 1; const f = $("frame") ? $("frame").value : undefined;
  document.querySelectorAll("#wipe, img.scope").forEach((img) => {
    const c = {v: version}; if (f !== undefined) c.frame = f; setParam(img, c); }); };
async function post(url, body) {
  const r = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json",
    "Accept": "application/json"}, body: JSON.stringify(body)});
  const data = await r.json().catch(() => ({error: r.statusText}));
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}
const url = (path, extra) => path + "?" + new URLSearchParams({...extra, token: S.token});
function poll(id, bar, done, label) {
  const tick = async () => {
    const r = await fetch(url("/api/job", {id}), {headers: {Accept: "application/json"}});
    const j = await r.json(); bar.hidden = false; bar.value = j.fraction;
    if (label) label.textContent = j.state + " " + j.stage + " " + Math.round(100 * j.fraction) + "% " + j.message;
    if (j.state === "queued" || j.state === "running") setTimeout(tick, 400);
    else { bar.hidden = j.state !== "done"; done(j); }
  };
  tick();
}
const pos = $("pos");
if (pos) {
  $("wipe-go").hidden = true;
  let busy = false, pending = false;
  const wipe = $("wipe");
  wipe.addEventListener("load", () => { busy = false; if (pending) { pending = false; move(); } });
  wipe.addEventListener("error", () => { busy = false; });
  const move = () => { if (busy) { pending = true; return; } busy = true; setParam(wipe, {pos: pos.value}); };
  pos.addEventListener("input", move);
  $("frame").addEventListener("input", () => { $("frame-out").textContent = $("frame").value; });
  $("frame").addEventListener("change", refresh);
}
const controls = $("controls");
if (controls) {
  $("apply").hidden = true;
  const send = async (body) => {
    body.all_shots = $("all-shots").checked;
    try {
      const data = await post(url("/shot", {clip: S.clip, shot: S.shot}), body);
      $("look-state").textContent = data.state;
      $("regional").disabled = data.choice.mode === "fast" && !data.fixed;
      refresh();
      if (data.job && data.state === "training") watchTraining(data.job);
    } catch (e) { msg(e.message, true); }
  };
  const watchTraining = (id) => poll(id, $("train-progress"), (j) => {
    $("look-state").textContent = j.state === "done" ? "ready" : j.state + ": " + j.message;
    $("train-progress").hidden = true; refresh(); });
  let timer = null;
  $("strength").addEventListener("input", () => { $("strength-out").textContent = (+$("strength").value).toFixed(2);
    clearTimeout(timer); timer = setTimeout(() => send({strength: +$("strength").value}), 40); });
  $("regional").addEventListener("change", () => { $("regional-out").textContent = (+$("regional").value).toFixed(2);
    send({regional: +$("regional").value}); });
  controls.querySelectorAll("input[name=mode]").forEach((r) =>
    r.addEventListener("change", () => send({mode: r.value})));
  $("look").addEventListener("change", () => send({look: $("look").value}));
  if (controls.dataset.job) watchTraining(controls.dataset.job);
}
const render = $("render");
if (render) {
  const watch = (id) => poll(id, $("render-progress"), (j) => {
    const st = $("render-state"); st.textContent = j.state + " " + (j.message || "") + " ";
    if (j.output) { const a = document.createElement("a"); a.id = "output-link";
      a.href = url("/output", {id: j.id}); a.textContent = j.output_name; st.appendChild(a); }
    $("render-go").disabled = false; }, $("render-state"));
  render.addEventListener("submit", async (ev) => { ev.preventDefault(); $("render-go").disabled = true;
    try { const j = await post(url("/render", {clip: S.clip}), {overwrite: render.overwrite.checked}); watch(j.id); }
    catch (e) { msg(e.message, true); $("render-go").disabled = false; } });
  if (render.dataset.job) watch(render.dataset.job);
}
const preset = $("preset");
if (preset) preset.addEventListener("submit", async (ev) => { ev.preventDefault();
  try { const r = await post(url("/preset", {clip: S.clip, shot: S.shot}),
    {name: $("preset-name").value, force: preset.force.checked}); msg("preset saved: " + r.saved); }
  catch (e) { msg(e.message, true); } });
const up = $("upload"), drop = $("drop");
async function upload(form) {
  msg("uploading…");
  const r = await fetch(url("/upload", {}), {method: "POST", body: form, headers: {Accept: "application/json"}});
  const data = await r.json().catch(() => ({error: r.statusText}));
  if (!r.ok) { msg(data.error || r.statusText, true); return; }
  location.href = url("/", data.clip ? {clip: data.clip} : {clip: S.clip || ""});
}
up.addEventListener("submit", (ev) => { ev.preventDefault(); upload(new FormData(up)); });
drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (ev) => { ev.preventDefault(); drop.classList.remove("over");
  const form = new FormData();
  for (const f of ev.dataTransfer.files) form.append(/\.(jpe?g|png|tiff?|bmp|webp|p[pgn]m|cube)$/i.test(f.name)
    ? "reference" : "clip", f);
  upload(form); });
})();
"""
