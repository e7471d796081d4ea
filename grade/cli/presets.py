"""``grade presets ...``: list, show, rename, delete, export (.cube / ASC CDL) and import presets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from grade.errors import InputError
from grade.io.atomic import atomic_output, check_output_path
from grade.library import Library
from grade.presets import Preset, baked_lut_error, fit_look_lut, read_preset


def data_console():
    """Where data goes: stdout (messages and progress go to stderr)."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)  # a pipe or a file: do not wrap at 80


def run(args: argparse.Namespace, console) -> int:
    library = Library(args.library)
    action = {
        "list": _list,
        "show": _show,
        "rename": _rename,
        "delete": _delete,
        "export": _export,
        "import": _import,
    }[args.action]
    return action(args, library, console)


def _say(args, console, text: str, data: dict) -> None:
    if args.json:
        print(json.dumps(data))
    elif not args.quiet:
        console.print(text)


def _list(args, library: Library, console) -> int:
    rows = []
    for name, path, ro in library.entries():
        try:
            m = read_preset(path).manifest
            rows.append(
                {
                    "name": name,
                    "mode": m.mode,
                    "scene": m.scene,
                    "created": m.created.isoformat(),
                    "notes": m.notes,
                    "shipped": ro,
                    "path": str(path),
                }
            )
        except InputError as e:  # one damaged file must not hide the others
            rows.append({"name": name, "error": str(e), "shipped": ro, "path": str(path)})
    if args.json:
        print(json.dumps({"library": str(library.root), "presets": rows}))
        return 0
    if args.quiet:
        for r in rows:
            print(r["name"])
        return 0
    from rich.table import Table

    table = Table(title=f"presets in {library.root}" + (f" (+ shipped: {library.shipped})" if library.shipped else ""))
    for col in ("name", "mode", "scene", "created", "notes"):
        table.add_column(col)
    for r in rows:
        parts = (r.get("notes"), "shipped, read-only" if r["shipped"] else "")
        note = r.get("error") or "; ".join(x for x in parts if x)
        table.add_row(r["name"], r.get("mode", "?"), r.get("scene") or "", r.get("created", "")[:19], note)
    data_console().print(table)
    return 0


def _show(args, library: Library, console) -> int:
    path, ro = library.locate(args.name)
    preset = read_preset(path)
    data = preset.manifest.model_dump(mode="json")
    data["path"], data["shipped"] = str(path), ro
    if args.preview:
        check_output_path(args.preview, [path], force=args.force)
        _write_sheet(preset, args.preview, args.force)
        data["preview"] = str(args.preview)
    if args.json:
        print(json.dumps(data))
    elif not args.quiet:
        from rich.table import Table

        table = Table(title=f"preset {preset.name}", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value")
        for key, value in data.items():
            if isinstance(value, dict | list):
                value = json.dumps(value) if value else ""
            table.add_row(key, "" if value is None else str(value))
        data_console().print(table)
    return 0


def _write_sheet(preset: Preset, out: Path, force: bool) -> None:
    from grade.io import image as image_io
    from grade.preview import colour_ramp, contact_sheet
    from grade.shotgrade import preset_grade

    grade = preset_grade(preset, 1.0)
    rows = [(f"key {i + 1}", k, grade.thumb(k)) for i, k in enumerate(preset.keys)]
    if not rows:  # a LUT preset: show a ramp through it
        ramp = colour_ramp()
        rows = [("ramp", ramp, grade.thumb(ramp))]
    ref = preset.reference if preset.reference is not None else np.full((96, 160, 3), 40, np.uint8)
    data = image_io.encode_image(Path("preview.png"), contact_sheet(ref, rows))
    with atomic_output(out, force=force) as tmp:
        image_io.write_bytes(tmp, data)


def _rename(args, library: Library, console) -> int:
    dst = library.rename(args.name, args.new_name, force=args.force)
    _say(args, console, f"renamed {args.name} -> {args.new_name} ({dst})", {"renamed": args.name, "to": str(dst)})
    return 0


def _delete(args, library: Library, console) -> int:
    path = library.delete(args.name)
    _say(args, console, f"deleted {args.name} ({path})", {"deleted": args.name, "path": str(path)})
    return 0


def _import(args, library: Library, console) -> int:
    if not args.file.is_file():
        raise InputError(f"no such file: {args.file}")
    dst = library.import_file(args.file, args.name, force=args.force)
    _say(args, console, f"imported {args.file} -> {dst}", {"imported": str(args.file), "path": str(dst)})
    return 0


def _with_transforms(preset, look_lut, cube_input: str | None, cube_output: str | None):
    """The look with the input and/or output transform baked in (sampled exactly through OCIO), and the
    LUT's ``(input, output)`` spaces; a display-RGB preset has no spaces (None) and takes no transforms."""

    from grade.colourspace import load_config, ocio_apply, resolve
    from grade.lut import apply_lut, grid_points

    working = preset.manifest.working_space
    if working is None:
        if cube_input or cube_output:
            flag = "--cube-input" if cube_input else "--cube-output"
            raise InputError(f"{flag}: preset {preset.name!r} is a display-RGB look (made without --input-space)")
        return look_lut, None
    config = load_config()
    src = resolve(cube_input, config, "cube_input") if cube_input else working
    dst = resolve(cube_output, config, "cube_output") if cube_output else working
    if src == working and dst == working:
        return look_lut, (working, working)
    n = look_lut.shape[-1]
    pts = grid_points(n).numpy()
    if src != working:
        pts = np.clip(ocio_apply(pts, src, working, config), 0, 1)
    with torch.inference_mode():
        graded = apply_lut(look_lut, torch.from_numpy(pts).float().T.reshape(1, 3, -1, 1))[0, :, :, 0].T.numpy()
    if dst != working:
        graded = ocio_apply(graded, working, dst, config)
    out = np.clip(np.nan_to_num(graded), 0, 1)
    return torch.from_numpy(out).float().T.reshape(3, n, n, n).contiguous(), (src, dst)


def _export(args, library: Library, console) -> int:
    from grade.cdl import fit_cdl, write_cc
    from grade.colourspace import load_config
    from grade.cube import write_cube
    from grade.io.image import to_tensor
    from grade.lut import apply_lut, grid_points

    if args.cube is None and args.cdl is None:
        raise InputError("export needs --cube FILE.cube and/or --cdl FILE.cc")
    path, _ = library.locate(args.name)
    preset = read_preset(path)
    result: dict = {"preset": preset.name}
    fitted = preset.fitted_lut
    if args.cube is not None:
        if args.cube.suffix.lower() != ".cube":
            raise InputError(f"--cube needs a .cube file name: {args.cube}")
        check_output_path(args.cube, [path], force=args.force)
        err = preset.manifest.lut_error
        if fitted.shape[-1] != args.size or err is None and preset.keys:
            fitted, err = fit_look_lut(preset.learned, preset.lut, preset.keys, args.size)
        fitted, spaces = _with_transforms(preset, fitted, args.cube_input, args.cube_output)
        baked = spaces is not None and spaces != (preset.manifest.working_space,) * 2
        if baked:  # what the .cube is off by on the camera's footage, not the look's own LUT
            err = baked_lut_error(
                preset.learned, preset.lut, fitted, preset.keys, spaces, preset.manifest.working_space, load_config()
            )
        comments = [f"grade preset {preset.name}"]
        if spaces is not None:
            comments += [f"input: {spaces[0]}", f"output: {spaces[1]}"]
        title = f"grade preset {preset.name}" + (f" ({spaces[0]} -> {spaces[1]})" if spaces else "")
        with atomic_output(args.cube, force=args.force) as tmp:
            write_cube(tmp, fitted, title=title, comments=comments)
        result.update({"cube": str(args.cube), "size": args.size})
        if spaces is not None:
            result.update({"input_space": spaces[0], "output_space": spaces[1], "baked": baked})
        if err is not None:
            result.update({"mean_de2000": err.mean_de2000, "p95_de2000": err.p95_de2000})
    if args.cdl is not None:
        check_output_path(args.cdl, [path], force=args.force)
        if preset.keys:
            src = torch.cat([to_tensor(k).reshape(3, -1).T for k in preset.keys])
        else:
            src = grid_points(17)
        with torch.inference_mode():
            dst = apply_lut(fitted, src.T.reshape(1, 3, -1, 1))[0, :, :, 0].T
        cdl = fit_cdl(src, dst)
        write_cc(args.cdl, cdl, ident=preset.name, force=args.force)
        result.update({"cdl": str(args.cdl), "slope": cdl.slope, "offset": cdl.offset, "power": cdl.power})
        result["saturation"] = cdl.saturation
    text = f"exported {preset.name}"
    if "cube" in result:
        text += f" -> {result['cube']} ({args.size}-point LUT"
        if "mean_de2000" in result:
            against = "grade's colour-managed render of" if result.get("baked") else "the full look on"
            text += f"; vs {against} its key frames: mean ΔE2000 {result['mean_de2000']:.2f}, "
            text += f"95th percentile {result['p95_de2000']:.2f}"
            if result.get("baked") and args.size < 65 and result["mean_de2000"] > 0.5:
                text += "; transforms baked in need more points: --size 65 is closer"
        text += ")"
    if "cdl" in result:
        text += f" -> {result['cdl']} (ASC CDL)"
    _say(args, console, text, result)
    return 0
