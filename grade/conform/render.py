"""Rendering one event as its own graded clip with handles, in this process or in a pool of workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from grade.cdl import CDL
from grade.conform.plan import Planned
from grade.io.atomic import atomic_output

_CDL_TABLES: dict = {}


def event_colour(media: Path, options, input_space: str | None = None, preset_working: str | None = None):
    """The event's colour pipeline (None: display RGB, no colour management): its own input space (the
    looks file's ``[[inputs]]``) or the run's, the media's PQ/HLG tags, the look's working space."""
    from grade.colourspace import colour_pipeline, space_of_tags
    from grade.io.video import probe

    return colour_pipeline(
        input_space or options.input_space,
        options.working_space,
        options.output_space,
        options.keep_log,
        options.ocio_config,
        space_of_tags(probe(media).color_trc),
        preset_working,
    )


def render_event(
    grade,
    media: Path,
    output: Path,
    first: int,
    end: int,
    cdl: CDL | None,
    options,
    input_space: str | None = None,
    preset_working: str | None = None,
) -> int:
    """Render one event's frames ``[first, end)`` of ``media`` through ``grade`` (CDL first, on the source's
    own picture; then into the working space where colour-managed) to ``output``."""
    from grade.colourgrade import managed
    from grade.io import video as video_io

    info = video_io.probe(media)
    colour = event_colour(media, options, input_space, preset_working)
    pre = None
    if cdl is not None and not cdl.is_identity:
        if cdl not in _CDL_TABLES:
            _CDL_TABLES.clear()  # one at a time: 64 MiB each
            _CDL_TABLES[cdl] = _cdl_table(cdl)
        pre = _CDL_TABLES[cdl]
    # colour-managed: the pipeline folded into the grade's table (grade.colourgrade), input-space frames in
    graded = managed(colour, grade)
    graded.prepare(False, video_io.yuv_matrix(info), video_io.range_of(info) == 2)  # kept across events

    def grade_frame(i: int, pixels: np.ndarray) -> np.ndarray:
        if pre is not None:
            pixels = _apply_pre(pre, pixels)
        return graded.grade(pixels, info.height, info.width)

    with atomic_output(output, force=True) as tmp:
        stats = video_io.render_video(
            media,
            tmp,
            info,
            grade_frame,
            codec=options.codec or video_io.same_family_codec(output, info),
            crf=options.crf,
            frames=(first, end),
            output_tags=colour.output_tags if colour is not None else None,
        )
    return stats.frames


_WORKER_GRADES: dict = {}


def _worker_render(
    spec: tuple[str, str],
    strength: float,
    stabilise: bool,
    media: str,
    output: str,
    first: int,
    end: int,
    cdl: CDL | None,
    options_json: str,
    input_space: str | None = None,
    preset_working: str | None = None,
) -> tuple[int, float]:
    """Process-pool entry: rebuild the scene grade once per worker (from its preset or .cube) and render."""
    import signal
    import time

    from grade.library import read_look
    from grade.options import GradeOptions
    from grade.shotgrade import preset_grade

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; atomic outputs clean up on exit
    t = time.perf_counter()
    options = GradeOptions.model_validate_json(options_json)
    if spec not in _WORKER_GRADES:
        for g in _WORKER_GRADES.values():
            g.release()
        _WORKER_GRADES.clear()
        _, path = spec  # a .cube or a .gpreset (a library preset or the scene's trained look)
        grade = preset_grade(read_look(path), strength, stabilise, options.regional)
        _WORKER_GRADES[spec] = grade
    frames = render_event(
        _WORKER_GRADES[spec], Path(media), Path(output), first, end, cdl, options, input_space, preset_working
    )
    return frames, time.perf_counter() - t


def render_parallel(
    jobs: int, pending: list[Planned], specs, reports, settings, options, finish, task, settings_working=None
) -> None:
    """``--jobs N``: events rendered by N worker processes; the job file is written by this process only."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    settings_working = settings_working or {}  # scene -> the working space its preset was made in
    by_number = {r.number: r for r in reports}
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"))
    try:
        futures = {
            pool.submit(
                _worker_render,
                specs[p.scene],
                options.strength,
                options.stabilise,
                str(p.media.path),
                str(p.output),
                p.first,
                p.end,
                p.event.cdl if settings.apply_cdl else None,
                options.model_dump_json(),
                p.input_space,
                settings_working.get(p.scene),
            ): p
            for p in pending
        }
        for fut in as_completed(futures):
            p = futures[fut]
            frames, seconds = fut.result()
            finish(p, by_number[p.event.number], frames, seconds)
            task.advance()
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)  # running events finish or clean up; none half-written
        raise
    pool.shutdown(wait=True)


def _cdl_table(cdl: CDL):
    from grade.cdl import apply_cdl
    from grade.lut import PackedTable, grid_points

    n = 33
    lut = apply_cdl(cdl, grid_points(n)).T.reshape(3, n, n, n).contiguous()
    return PackedTable(lut), lut


def _apply_pre(pre, pixels):
    from grade.lut import apply_lut_u16

    table, lut = pre
    if pixels.dtype == np.uint16:
        return apply_lut_u16(lut, pixels)
    return table.apply_rgba(pixels)
