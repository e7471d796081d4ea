"""Colour management with OpenColorIO: camera log and wide-gamut footage in, a scene-referred working
space for the look, the right display out.

Without a colour space named anywhere, ``grade`` does no colour management at all: Rec.709 footage is
graded as the display RGB it is (same output, same speed as before). With ``--input-space`` (or a
preset made in a working space, or PQ / HLG tags on the container) every stage works in the working
space (default ACEScct): the key frames and the frames are converted into it, the reference still is
converted from sRGB through the inverse of the display's view, the look is fitted and applied there,
and the result goes out through the output display's view (or back into the input's space with
``--keep-log``).

The transforms come from OCIO's built-in ACES studio config (``ocio://studio-config-latest``, shipped
inside the ``opencolorio`` wheel) or a show's own config. Each is baked once into a 65-point 3D LUT over
the code values (the project's LUT kernels then apply it in a few milliseconds a frame); the bake
is checked against OCIO's processor in the benchmarks.
"""

from __future__ import annotations

import difflib
import functools
import threading
import weakref
from dataclasses import dataclass

import numpy as np
import torch

from grade.errors import InputError, setting

DEFAULT_CONFIG = "ocio://studio-config-latest"
DEFAULT_WORKING = "ACEScct"
BAKE_SIZE = 65
COMPOSE_SIZE = 129  # a look composed with both transforms (ColourPipeline.compose)

# short names a colourist types -> colour spaces of the ACES studio config
ALIASES = {
    "rec709": "Rec.1886 Rec.709 - Display",
    "srgb": "sRGB - Display",
    "slog3": "S-Log3 S-Gamut3.Cine",
    "logc3": "ARRI LogC3 (EI800)",
    "logc4": "ARRI LogC4",
    "vlog": "V-Log V-Gamut",
    "clog3": "CanonLog3 CinemaGamut D55",
    "log3g10": "Log3G10 REDWideGamutRGB",
    "applelog": "Apple Log",
    "davinci-intermediate": "DaVinci Intermediate WideGamut",
    "acescct": "ACEScct",
    "acescc": "ACEScc",
    "acescg": "ACEScg",
    "linear-rec709": "Linear Rec.709 (sRGB)",
    "rec2100-pq": "Rec.2100-PQ - Display",
    "rec2100-hlg": "Rec.2100-HLG - Display",
    "p3-d65": "Display P3 - Display",
}

# container colour tags (primaries, transfer, matrix) written for a display colour space
_TAGS = {
    "Rec.1886 Rec.709 - Display": (1, 1, 1),
    "sRGB - Display": (1, 13, 1),
    "Rec.2100-PQ - Display": (9, 16, 9),
    "Rec.2100-HLG - Display": (9, 18, 9),
}


@functools.lru_cache(maxsize=4)
def load_config(source: str | None = None):
    """The OCIO config: a file path or an ``ocio://`` built-in name (default: the ACES studio config)."""
    import PyOpenColorIO as ocio

    source = source or DEFAULT_CONFIG
    try:
        return ocio.Config.CreateFromFile(str(source))
    except Exception as e:  # OCIO raises its own Exception type, with a readable message
        raise InputError(f"{setting('ocio_config', 'FILE')}: cannot load {source}: {str(e).splitlines()[0]}") from None


def names(config) -> list[str]:
    """Every colour space name of ``config`` and the aliases that resolve in it."""
    spaces = list(config.getColorSpaceNames())
    return [a for a, n in ALIASES.items() if n in spaces] + spaces


def resolve(name: str, config=None, what: str = "input_space") -> str:
    """The config's colour space for ``name``: an alias (``slog3``), an exact or case-insensitive name.

    >>> resolve("slog3")
    'S-Log3 S-Gamut3.Cine'
    >>> resolve("acescct")
    'ACEScct'

    Raises:
        InputError: unknown, with the closest names.
    """
    config = config or load_config()
    spaces = list(config.getColorSpaceNames())
    key = name.strip()
    if key.lower() in ALIASES and ALIASES[key.lower()] in spaces:
        return ALIASES[key.lower()]
    if key in spaces:
        return key
    folded = {s.lower(): s for s in spaces}
    if key.lower() in folded:
        return folded[key.lower()]
    close = difflib.get_close_matches(key.lower(), [n.lower() for n in names(config)], n=3, cutoff=0.3)
    lookup = {n.lower(): n for n in names(config)}
    hint = ", ".join(repr(lookup[c]) for c in close) or "see `grade help`"
    raise InputError(f"{setting(what, 'NAME')}: unknown colour space {name!r}; closest: {hint}")


def is_display(name: str, config=None) -> bool:
    """Whether a colour space is display-referred (Rec.709 video, sRGB, PQ, HLG) rather than scene-referred."""
    import PyOpenColorIO as ocio

    config = config or load_config()
    return config.getColorSpace(name).getReferenceSpaceType() == ocio.REFERENCE_SPACE_DISPLAY


def is_linear(name: str, config=None) -> bool:
    """Whether a colour space holds scene-linear values (ACEScg, linear Rec.709: an EXR's), by its OCIO
    encoding."""
    config = config or load_config()
    return config.getColorSpace(name).getEncoding() == "scene-linear"


def space_of_tags(color_trc: int) -> str | None:
    """The input colour space that a container's transfer tag states unambiguously (PQ, HLG), else None:
    BT.709 and sRGB tags are display video, graded as it is without colour management."""
    return {16: "Rec.2100-PQ - Display", 18: "Rec.2100-HLG - Display"}.get(color_trc)


def _processor(src: str, dst: str, config):
    """An OCIO CPU processor from ``src`` to ``dst``; between a display and a scene-referred space it goes
    through the display's default view (the ACES 2.0 SDR/HDR output transforms in the studio config)."""
    import PyOpenColorIO as ocio

    src_display, dst_display = is_display(src, config), is_display(dst, config)
    if src_display == dst_display:
        transform = ocio.ColorSpaceTransform(src=src, dst=dst)
    elif dst_display:
        transform = ocio.DisplayViewTransform(src=src, display=dst, view=config.getDefaultView(dst))
    else:
        transform = ocio.DisplayViewTransform(
            src=dst, display=src, view=config.getDefaultView(src), direction=ocio.TRANSFORM_DIR_INVERSE
        )
    return config.getProcessor(transform).getDefaultCPUProcessor()


def ocio_apply(rgb: np.ndarray, src: str, dst: str, config=None) -> np.ndarray:
    """``(..., 3)`` float RGB converted by OCIO's own processor (a reference for the baked LUTs)."""
    config = config or load_config()
    out = np.ascontiguousarray(rgb, dtype=np.float32).copy()
    flat = out.reshape(-1, 3)
    _processor(src, dst, config).applyRGB(flat)
    return out


def bake(src: str, dst: str, config=None, size: int = BAKE_SIZE) -> torch.Tensor:
    """The transform ``src -> dst`` sampled on a ``size``-point grid of code values in [0, 1]: a
    ``(3, N, N, N)`` LUT indexed ``[c, r, g, b]`` (:mod:`grade.lut`), outputs clipped to [0, 1]."""
    from grade.lut import grid_points

    pts = grid_points(size).numpy().astype(np.float32)  # (N^3, 3) RGB
    return _as_table(ocio_apply(pts, src, dst, config), size)


def _as_table(nodes: np.ndarray, size: int) -> torch.Tensor:
    """Exact values at the grid's nodes ``(N^3, 3)`` as the baked LUT ``(3, N, N, N)``: NaN as 0, clipped."""
    out = np.clip(np.nan_to_num(nodes, nan=0.0), 0.0, 1.0)
    return torch.from_numpy(out).T.reshape(3, size, size, size).contiguous()


def _clip_marks(src: str, dst: str, config, size: int = BAKE_SIZE, tol: float = 1 / 1023) -> torch.Tensor | None:
    """Where the baked ``src -> dst`` table (:func:`bake`) is not the transform: a ``(3, N, N, N)`` table
    whose first channel is 1 at the nodes of every cell where the exact transform leaves [0, 1] (saturated
    wide-gamut colours below 0 in ACEScct), has no value (NaN), or is more than ``tol`` (one 10-bit
    code) from the table at the cell's centre (log to log through a matrix bends hard for saturated
    colours), 0 elsewhere (the other channels 0); a lookup then marks the pixels of those cells. None
    when there are none."""
    from grade.lut import apply_lut, grid_points

    pts = grid_points(size).numpy().astype(np.float32)
    nodes = ocio_apply(pts, src, dst, config)
    table = _as_table(nodes, size)  # what bake() gives
    centres = (grid_points(size - 1).numpy() * (size - 2) + 0.5) / (size - 1)  # (size-1)^3 cell centres
    exact = ocio_apply(centres.astype(np.float32), src, dst, config)
    with torch.inference_mode():
        baked = apply_lut(table.float(), torch.from_numpy(centres).float().T.reshape(1, 3, -1, 1))[0, :, :, 0].T
    with np.errstate(invalid="ignore"):
        bad_node = ~np.isfinite(nodes).all(1) | ((nodes < 0.0) | (nodes > 1.0)).any(1)
        off = np.abs(np.nan_to_num(exact, nan=10.0) - baked.numpy()).max(1) > tol
        bad_cell = off | ~np.isfinite(exact).all(1) | ((exact < 0.0) | (exact > 1.0)).any(1)
    marks = torch.from_numpy(bad_node.reshape(size, size, size))
    cells = torch.from_numpy(bad_cell.reshape(size - 1, size - 1, size - 1))
    for dr in (0, 1):  # every corner of a bad cell
        for dg in (0, 1):
            for db in (0, 1):
                marks[dr : dr + size - 1, dg : dg + size - 1, db : db + size - 1] |= cells
    if not bool(marks.any()):
        return None
    out = torch.zeros(3, size, size, size)
    out[0] = marks.float()
    return out.contiguous()


@dataclass
class ColourPipeline:
    """The colour-managed path of one grade: ``input -> working`` for the frames and key frames,
    ``reference -> working`` for the still, ``working -> output`` for what is written."""

    input: str
    working: str
    output: str
    config_source: str | None = None
    # frames leave the grade as float32 RGB in the output space, through OCIO's exact processor, unclipped:
    # a video pulled into EXR frames in a scene-referred space (linear values above 1, negative ones)
    float_frames: bool = False

    def __post_init__(self) -> None:
        config = load_config(self.config_source)
        self.to_working = bake(self.input, self.working, config)
        self.from_working = bake(self.working, self.output, config)
        srgb = ALIASES["srgb"] if ALIASES["srgb"] in list(config.getColorSpaceNames()) else self.input
        self.reference_in = bake(srgb, self.working, config)
        # a display view clamps what lies outside the working space's [0, 1] itself; a scene-referred
        # output (--keep-log, a log or linear --output-space) must get those values back (outside())
        self.scene_output = not is_display(self.output, config)
        # scene-linear ends: an image sequence's fades are measured, and undone, through a display-like power
        self.linear_input, self.linear_output = is_linear(self.input, config), is_linear(self.output, config)
        self._packed: dict[str, object] = {}
        self._marks_made: dict[str, torch.Tensor | None] = {}
        self._managed: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    @property
    def output_tags(self) -> dict | None:
        """Container colour tags for the output, or None to keep the source's (a log or scene space)."""
        tags = _TAGS.get(self.output)
        if tags is None:
            return None
        return {"color_primaries": tags[0], "color_trc": tags[1], "colorspace": tags[2]}

    def _apply(self, which: str, pixels: np.ndarray) -> np.ndarray:
        """A baked transform on a frame in any of the render's layouts (RGBA / RGB uint8, RGB uint16)."""
        from grade.lut import PackedTable, apply_lut, apply_lut_u16

        lut = getattr(self, which)
        if pixels.dtype == np.uint16:
            return apply_lut_u16(lut, np.ascontiguousarray(pixels))
        if pixels.ndim == 3 and pixels.shape[2] == 4:
            if which not in self._packed:
                self._packed[which] = PackedTable(lut)
            return self._packed[which].apply_rgba(np.ascontiguousarray(pixels))
        rgb = torch.from_numpy(np.ascontiguousarray(pixels[..., :3])).float().div(255).permute(2, 0, 1)[None]
        out = apply_lut(lut, rgb)[0].permute(1, 2, 0)
        return out.clamp(0, 1).mul(255).add(0.5).to(torch.uint8).numpy()

    def frame_in(self, pixels: np.ndarray) -> np.ndarray:
        """A decoded frame (input space) in the working space, same layout."""
        return self._apply("to_working", pixels)

    def frame_out(self, pixels: np.ndarray, outside: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """A graded frame (working space) in the output space, same layout. ``outside`` (from
        :meth:`outside`): pixels whose working values the working space's [0, 1] clipped; each gets what
        the clip took off added back to its graded value, through OCIO's exact processor. For a
        scene-referred output, pixels in a cell of the output table where the output space's own [0, 1]
        clipped a node (ACEScct colours outside S-Gamut3.Cine, say), or where the table is off by more
        than a code of the frame's depth (:func:`_clip_marks`), go through that processor too: the table
        would move them by up to hundreds of 10-bit codes."""
        out = self._apply("from_working", pixels)
        near = None  # pixels in a cell where the output table is not the transform
        which = self._marks("out", pixels.dtype)
        if which is not None:
            marks = self._apply(which, pixels)[..., 0]
            near = np.flatnonzero(marks) if marks.max() else None  # max(): 10x faster than nonzero
        if outside is None and near is None:
            return out
        channels = pixels.shape[-1]
        idx, lost = outside if outside is not None else (np.zeros(0, np.int64), np.zeros((0, 3), np.float32))
        if near is not None:  # one exact pass over both sets, a pixel of both with its lost part
            extra = np.setdiff1d(near, idx, assume_unique=True)
            idx = np.concatenate([idx, extra])
            lost = np.concatenate([lost, np.zeros((len(extra), 3), np.float32)])
        scale = 65535.0 if pixels.dtype == np.uint16 else 255.0
        graded = pixels.reshape(-1, channels)[idx, :3].astype(np.float32) / scale + lost
        exact = np.nan_to_num(self._exact_apply("float_out", graded), nan=0.0)
        flat = out.reshape(-1, channels)
        flat[idx, :3] = (np.clip(exact, 0.0, 1.0) * scale + 0.5).astype(out.dtype)
        return out

    def graded_out(self, pixels: np.ndarray, outside: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """A graded frame of the render out to the output space: :meth:`frame_out`, or with
        :attr:`float_frames` float32 RGB ``(H, W, 3)``: the working codes (plus what the working space's
        [0, 1] clipped, ``outside``) through OCIO's exact processor, every pixel, not clipped."""
        if not self.float_frames:
            return self.frame_out(pixels, outside)
        scale = 65535.0 if pixels.dtype == np.uint16 else 255.0
        work = pixels[..., :3].astype(np.float32) / np.float32(scale)
        if outside is not None:
            idx, lost = outside
            work.reshape(-1, 3)[idx] += lost
        out = self._exact_apply("float_out", work)
        return np.nan_to_num(out, nan=0.0, posinf=65504.0, neginf=-65504.0)

    def _marks(self, side: str, dtype) -> str | None:
        """The name of the marks table (:func:`_clip_marks`) of the input (``side="in"``) or output table
        for frames of ``dtype``, built on first use and kept with the baked tables; None for a display
        output or where the table needs none. Tolerance: one code of the frame's depth, counted in
        10-bit codes for 16-bit frames (a 10-bit log source)."""
        if not self.scene_output:
            return None
        deep = np.dtype(dtype) == np.uint16
        name = f"marks_{side}{16 if deep else 8}"
        with self._lock:
            if name not in self._marks_made:
                src, dst = (self.input, self.working) if side == "in" else (self.working, self.output)
                tol = 1 / 1023 if deep else 1 / 255
                made = _clip_marks(src, dst, load_config(self.config_source), tol=tol)
                self._marks_made[name] = made
                if made is not None:
                    setattr(self, name, made)  # where _apply finds its tables
            return name if self._marks_made[name] is not None else None

    def outside(self, pixels: np.ndarray, working: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """What :meth:`frame_in` clipped: ``(indices, lost)``, the flat indices of the pixels whose working
        values a scene-referred output needs back (those in a cell of the input table where
        :func:`_clip_marks` found it clipped or off: all the clipped ones, and some next to them), and
        ``lost`` ``(P, 3)`` float32, their exact working values (OCIO's processor) minus the codes the
        grade sees. None when there are none, or when the output is a display (its view clamps them).

        A grade that works on the clipped codes (a learned look: its field is fitted on them) then moves
        these colours as it moves their clipped value, and :meth:`frame_out` adds ``lost`` back: a
        ``--keep-log`` identity grade returns saturated wide-gamut colours as they came."""
        which = self._marks("in", pixels.dtype)
        if which is None:
            return None
        marks = self._apply(which, pixels)[..., 0]
        if not marks.max():  # 10x faster than nonzero, which is only needed for frames with marks
            return None
        idx = np.flatnonzero(marks)
        scale = 65535.0 if pixels.dtype == np.uint16 else 255.0
        source = pixels.reshape(-1, pixels.shape[-1])[idx, :3].astype(np.float32) / scale
        exact = np.nan_to_num(self._exact_apply("float_in", source), nan=0.0)
        lost = exact - working.reshape(-1, working.shape[-1])[idx, :3].astype(np.float32) / scale
        return idx, lost

    def reference(self, rgb: torch.Tensor) -> torch.Tensor:
        """A reference still ``(3, H, W)`` in [0, 1] (sRGB) in the working space."""
        from grade.lut import apply_lut

        return apply_lut(self.reference_in, rgb[None].float())[0].contiguous()

    def _exact(self, which: str):
        if which not in self._packed:
            config = load_config(self.config_source)
            src, dst = (self.input, self.working) if which == "float_in" else (self.working, self.output)
            self._packed[which] = _processor(src, dst, config)
        return self._packed[which]

    def float_in(self, rgb: np.ndarray) -> np.ndarray:
        """Float RGB ``(H, W, 3)`` (scene-linear values above 1 included) into the working space, exactly
        (OCIO's processor: an image sequence, where a LUT's [0, 1] domain would clip)."""
        return self._exact_apply("float_in", rgb)

    def float_out(self, rgb: np.ndarray) -> np.ndarray:
        """Float working-space RGB out to the output space, exactly (values above 1 kept for a linear output)."""
        return self._exact_apply("float_out", rgb)

    def release(self) -> None:
        self._packed.clear()

    def _grid_in(self, size: int) -> np.ndarray:
        """The ``size``-point grid of input code values through OCIO's exact ``input -> working``, not
        clipped: ``(size**3, 3)`` float32 (cached: every shot's composed table starts from it)."""
        key = f"grid_in{size}"
        with self._lock:
            if key not in self._packed:
                from grade.lut import grid_points

                pts = grid_points(size).numpy().astype(np.float32)
                self._packed[key] = np.nan_to_num(self._exact_apply("float_in", pts), nan=0.0)
            return self._packed[key]

    def _graded_working(self, lut: torch.Tensor, work: np.ndarray) -> np.ndarray:
        """A working-space look ``lut`` on working values ``(P, 3)`` that may lie outside [0, 1] (saturated
        wide-gamut colours go below 0 in ACEScct): the look on the values clipped to its domain, plus what
        the clip took off, so that the output transform gets those colours back (``--keep-log`` returns
        them as they came, where a clip would move them by hundreds of 10-bit codes)."""
        from grade.lut import apply_lut

        inside = np.clip(work, 0.0, 1.0)
        with torch.inference_mode():
            graded = apply_lut(lut.float(), torch.from_numpy(inside).T.reshape(1, 3, -1, 1))[0, :, :, 0].T.numpy()
        return graded + (work - inside)

    def _exact_apply(self, which: str, rgb: np.ndarray) -> np.ndarray:
        """OCIO's processor on float RGB ``(..., 3)``, a new array; large arrays in row blocks on up to 4
        threads (the processor releases the GIL: 2.1 M points of the ACES 2.0 view, 0.8 s -> 0.4 s on 2 cores)."""
        import os
        from concurrent.futures import ThreadPoolExecutor

        out = np.ascontiguousarray(rgb, dtype=np.float32).copy()
        flat, proc = out.reshape(-1, 3), self._exact(which)
        workers = min(4, os.cpu_count() or 1)
        if workers == 1 or flat.shape[0] < 200_000:
            proc.applyRGB(flat)
            return out
        with ThreadPoolExecutor(workers, thread_name_prefix="grade-ocio") as pool:
            list(pool.map(proc.applyRGB, np.array_split(flat, 4 * workers)))
        return out

    def compose(self, lut: torch.Tensor, size: int = COMPOSE_SIZE) -> torch.Tensor:
        """A working-space look ``lut`` ``(3, N, N, N)`` with both transforms folded in: one
        ``(3, size, size, size)`` table from input code values to output code values, through OCIO's exact
        processors (~0.5 s at 129 on 2 cores; the input side is cached per pipeline).

        129 points, not 65: log footage fills a narrow band of codes, and a fitted look's kinks fall
        between the nodes (a fitted look on 16-bit S-Log3, mean ΔE2000 to OCIO's exact chain: 0.39 at 65,
        0.12 at 129; 0.15 at 129 with the baked output LUT instead of the processor).

        The nodes are not the chain's values but :func:`~grade.lut.unbiased_nodes`: between nodes, a
        trilinear lookup of a curved chain (a display view's tone curve) errs to one side, and the nodes are
        moved to cancel that bias (the same fitted look: 0.149 -> 0.123 from OCIO's exact chain, and
        0.20 -> 0.17 from the separate path's two baked lookups).
        """
        graded = self._graded_working(lut, self._grid_in(size))
        out = np.clip(np.nan_to_num(self._exact_apply("float_out", graded), nan=0.0), 0.0, 1.0)
        from grade.lut import unbiased_nodes

        return unbiased_nodes(torch.from_numpy(out).T.reshape(3, size, size, size).contiguous())

    def compose_input(self, lut: torch.Tensor, size: int = COMPOSE_SIZE, unbiased: bool = True) -> torch.Tensor:
        """A working-space table ``lut`` ``(3, N, N, N)`` with the input transform folded in: a
        ``(3, size, size, size)`` table from input code values to ``lut``'s working values, through OCIO's
        exact processor, the working values clipped to [0, 1] as :meth:`frame_in` clips them (a learned
        look's base: its field is fitted on clipped values; only a display output may use it, whose view
        clamps what the clip took off). ``unbiased``: the nodes of :func:`~grade.lut.unbiased_nodes`."""
        from grade.lut import apply_lut, unbiased_nodes

        work = torch.from_numpy(np.clip(self._grid_in(size), 0.0, 1.0))
        with torch.inference_mode():
            out = apply_lut(lut.float(), work.T.reshape(1, 3, -1, 1))[0, :, :, 0].reshape(3, size, size, size)
        out = out.clamp(0, 1).contiguous()
        return unbiased_nodes(out) if unbiased else out

    def exact(self, lut: torch.Tensor, rgb: np.ndarray) -> np.ndarray:
        """Input-space R'G'B' ``(P, 3)`` float32 in [0, 1] through OCIO's exact ``input -> working``, the
        look ``lut`` and OCIO's ``working -> output``: ``(P, 3)`` in [0, 1] (the composed tables' reference)."""
        graded = self._graded_working(lut, np.nan_to_num(self._exact_apply("float_in", rgb), nan=0.0))
        return np.clip(np.nan_to_num(self._exact_apply("float_out", graded), nan=0.0), 0.0, 1.0)

    def managed(self, grade):
        """The :class:`~grade.colourgrade.ManagedGrade` of a shot's ``grade`` (one per grade, kept while the
        grade lives): frames go in in the input space and come out in the output space."""
        from grade.colourgrade import ManagedGrade

        with self._lock:
            held = self._managed.get(grade)
        if held is None:
            made = ManagedGrade(grade, self)
            with self._lock:
                held = self._managed.setdefault(grade, made)
        return held

    def yuv_native(self, matrix: int) -> bool:
        """Whether frames may stay in their 4:2:0 YCbCr through a composed table: the output is written
        with the source's YCbCr matrix ``matrix`` (swscale id), so code values need no other matrix."""
        from grade.io.decode import SWS_MATRIX

        tags = self.output_tags
        return tags is None or SWS_MATRIX.get(tags["colorspace"]) == matrix


EXR_SPACE = "Linear Rec.709 (sRGB)"  # an EXR is scene-linear unless it or --input-space says otherwise

# the OpenEXR ``chromaticities`` (red, green, blue, white xy; the published primaries) of the linear spaces
# an EXR is commonly kept in, by their colour interop ids (the config's aliases)
CHROMATICITIES: dict[str, tuple[float, ...]] = {
    "lin_ap0_scene": (0.7347, 0.2653, 0.0, 1.0, 0.0001, -0.077, 0.32168, 0.33767),
    "lin_ap1_scene": (0.713, 0.293, 0.165, 0.83, 0.128, 0.044, 0.32168, 0.33767),
    "lin_rec709_scene": (0.64, 0.33, 0.3, 0.6, 0.15, 0.06, 0.3127, 0.329),
    "lin_p3d65_scene": (0.68, 0.32, 0.265, 0.69, 0.15, 0.06, 0.3127, 0.329),
    "lin_rec2020_scene": (0.708, 0.292, 0.17, 0.797, 0.131, 0.046, 0.3127, 0.329),
    "lin_adobergb_scene": (0.64, 0.33, 0.21, 0.71, 0.15, 0.06, 0.3127, 0.329),
}


def linear_rec709(config=None) -> str | None:
    """The config's name for scene-linear Rec.709 (what an EXR holds unless it says otherwise): by its colour
    interop id or the usual names (an ACES 1 show config calls it "Utility - Linear - sRGB"); None where it
    has none.

    >>> linear_rec709()
    'Linear Rec.709 (sRGB)'
    """
    config = config or load_config()
    for key in ("lin_rec709_scene", EXR_SPACE, "lin_rec709", "Utility - Linear - sRGB", "lin_srgb"):
        found = config.getColorSpace(key)
        if found is not None and not config.hasRole(key):
            return found.getName()
    return None


def exr_tags(name: str, config=None) -> tuple[str | None, str, tuple[float, ...] | None]:
    """What an EXR written in colour space ``name`` states (:func:`grade.io.sequence.exr_statement`): its
    colour interop id (``lin_ap1_scene`` for ACEScg; OpenImageIO keeps it as ``oiio:ColorSpace`` where it
    knows the id), its name in the config, and its ``chromaticities`` where it is one of
    :data:`CHROMATICITIES`' linear spaces.

    >>> exr_tags("ACEScg")[0], exr_tags("ACEScct")
    ('lin_ap1_scene', ('ocio:acescct_ap1_scene', 'ACEScct', None))
    """
    config = config or load_config()
    space = config.getColorSpace(name)
    interop = getattr(space, "getInteropID", lambda: "")() or None  # OpenColorIO 2.5 on
    return interop, space.getName(), CHROMATICITIES.get(interop or "")


def _stated(config, key: str | None):
    """The config's colour space a file names, or None: not a role (a config's own choice, not the
    file's) and not a data space (Raw: no colour statement at all)."""
    found = config.getColorSpace(key) if key else None
    if found is None or config.hasRole(key) or found.isData():
        return None
    return found


def sequence_space(suffix: str, statement: tuple | None = None, config=None) -> str | None:
    """The input space an image sequence's kind and files state, or None (DPX, TIFF, PNG: display code
    values unless ``--input-space`` says otherwise). An EXR is the colour space its statement names
    (:func:`grade.io.sequence.exr_statement`: OpenImageIO's ``oiio:ColorSpace``, then ``grade:ColorSpace``,
    where the config knows them; not a role or a data space), else the linear space its
    ``chromaticities`` give (within 0.001), else scene-linear Rec.709 (:func:`linear_rec709`).

    >>> sequence_space(".exr"), sequence_space(".dpx"), sequence_space(".exr", ("lin_ap1_scene", None, None))
    ('Linear Rec.709 (sRGB)', None, 'ACEScg')
    >>> sequence_space(".exr", (None, None, (0.7347, 0.2653, 0.0, 1.0, 0.0001, -0.077, 0.32168, 0.33767)))
    'ACES2065-1'

    Raises:
        InputError: the EXR states nothing and the config has no linear Rec.709 to read it as.
    """
    if not suffix.lower().endswith(".exr"):
        return None
    config = config or load_config()
    interop, name, chromaticities = statement or (None, None, None)
    for key in (interop, name):
        found = _stated(config, key)
        if found is not None:
            return found.getName()
    if chromaticities is not None and len(chromaticities) == 8:
        for known, xy in CHROMATICITIES.items():
            if np.allclose(chromaticities, xy, atol=1e-3) and config.getColorSpace(known) is not None:
                return config.getColorSpace(known).getName()
    found = linear_rec709(config)
    if found is None:
        raise InputError(
            f"an EXR that states no colour space is read as linear Rec.709, which the OCIO config does not "
            f"have: give {setting('input_space', 'NAME')}"
        )
    return found


@functools.lru_cache(maxsize=8)
def colour_pipeline(
    input_space: str | None,
    working_space: str | None,
    output_space: str | None,
    keep_log: bool,
    config_source: str | None,
    tagged: str | None = None,
    preset_working: str | None = None,
    float_frames: bool = False,
) -> ColourPipeline | None:
    """The colour pipeline a grade asks for, or None for none (display footage, nothing named).

    ``tagged`` is the input space the container's tags state (PQ / HLG), ``preset_working`` the working
    space a preset's look was made in. The output defaults to Rec.709 through the display's view for a
    scene-referred input, and to the input's own space for a display-referred one; ``keep_log`` writes
    the input's space whatever it is. ``float_frames``: frames come out as float (:attr:`ColourPipeline.
    float_frames`) where the output is scene-referred. Pipelines are cached (a conform asks once per event).
    """
    if not any((input_space, working_space, output_space, keep_log, tagged, preset_working, config_source)):
        return None
    config = load_config(config_source)
    src = resolve(input_space, config) if input_space else (tagged or ALIASES["rec709"])
    working = resolve(working_space or preset_working or DEFAULT_WORKING, config, "working_space")
    if preset_working and working != resolve(preset_working, config, "working_space"):
        raise InputError(
            f"{setting('working_space', 'NAME')}: the preset's look was made in {preset_working!r}, not {working!r}"
        )
    if keep_log:
        if output_space:
            raise InputError(f"{setting('keep_log')} writes the input's space: leave out {setting('output_space')}")
        dst = src
    elif output_space:
        dst = resolve(output_space, config, "output_space")
    else:
        dst = src if is_display(src, config) else ALIASES["rec709"]
    return ColourPipeline(src, working, dst, config_source, float_frames and not is_display(dst, config))
