"""3D colour lookup tables: evaluate, fit, and apply to frames fast (``.cube`` files: :mod:`grade.cube`).

A LUT here is a float32 tensor ``(3, N, N, N)`` indexed ``[channel, r, g, b]`` over a uniform grid
of ``[0, 1]^3`` (the ``.cube`` convention with red varying fastest on disk).
"""

from __future__ import annotations

import functools
import threading

import numpy as np
import torch
import torch.nn.functional as F


def identity_lut(n: int = 33) -> torch.Tensor:
    """The identity LUT, shape ``(3, n, n, n)``."""
    g = torch.linspace(0, 1, n)
    r, gg, b = torch.meshgrid(g, g, g, indexing="ij")
    return torch.stack([r, gg, b])


def grid_points(n: int) -> torch.Tensor:
    """The LUT's grid as RGB points, shape ``(n**3, 3)`` in ``[r, g, b]`` index order."""
    return identity_lut(n).reshape(3, -1).T.contiguous()


def apply_lut(lut: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
    """Trilinear lookup of RGB values.

    Args:
        lut: ``(3, N, N, N)``.
        rgb: ``(B, 3, H, W)`` in [0, 1].
    Returns:
        ``(B, 3, H, W)``.
    """
    b = rgb.shape[0]
    # grid_sample's last grid axis is (x, y, z) = (W, H, D) of the volume = (b, g, r) of our LUT
    grid = rgb.clamp(0, 1).permute(0, 2, 3, 1).flip(-1).unsqueeze(1) * 2 - 1  # (B, 1, H, W, 3)
    vol = lut.unsqueeze(0).expand(b, -1, -1, -1, -1).to(rgb.dtype)
    out = F.grid_sample(vol, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[:, :, 0]


def blend_strength(lut: torch.Tensor, strength: float) -> torch.Tensor:
    """``identity + strength * (lut - identity)``: 0 leaves the footage untouched, 1 is the full grade."""
    if strength == 1.0:
        return lut
    return identity_lut(lut.shape[-1]) + float(strength) * (lut - identity_lut(lut.shape[-1]))


def resample_lut(lut: torch.Tensor, n: int) -> torch.Tensor:
    """The same mapping on an ``n``-point grid (trilinear), ``(3, n, n, n)``."""
    if lut.shape[-1] == n:
        return lut.clone()
    pts = grid_points(n).T.reshape(1, 3, -1, 1)
    return apply_lut(lut, pts)[0, :, :, 0].reshape(3, n, n, n).contiguous()


def fit_lut(
    src: torch.Tensor, dst: torch.Tensor, prior: torch.Tensor, n: int = 33, smooth: float = 1.0, iters: int = 60
) -> torch.Tensor:
    """The ``n``-point LUT that best maps colours ``src`` to ``dst`` (least squares, trilinear).

    Grid nodes that no sample reaches follow the shape of ``prior`` (a LUT of the same mapping's
    global part): the fit is ``prior + D`` with ``D`` penalised for roughness (``smooth`` times
    the squared differences of neighbouring nodes, per node), so the correction spreads smoothly
    into empty regions of the cube. ``smooth`` 1 (measured on a learned look: largest step between
    neighbouring nodes 1.0 -> 0.37 of full scale, mean ΔE2000 on its key frames +0.2).

    Args:
        src, dst: ``(P, 3)`` RGB in [0, 1].
        prior: ``(3, M, M, M)``.
    Returns:
        ``(3, n, n, n)`` float32.
    """
    base = resample_lut(prior.float(), n)
    src_g = src.float().T.reshape(1, 3, -1, 1)
    dst = dst.float()
    with torch.inference_mode(False), torch.enable_grad():
        delta = torch.zeros_like(base, requires_grad=True)
        opt = torch.optim.LBFGS([delta], lr=1, max_iter=iters, history_size=20, line_search_fn="strong_wolfe")
        weight = smooth * src.shape[0] / base[0].numel()

        def closure() -> torch.Tensor:
            opt.zero_grad()
            pred = apply_lut(base + delta, src_g)[0, :, :, 0].T
            rough = sum((delta.diff(dim=d) ** 2).sum() for d in (1, 2, 3))
            loss = ((pred - dst) ** 2).sum() / src.shape[0] + weight * rough / src.shape[0]
            loss.backward()
            return loss

        opt.step(closure)
    return (base + delta.detach()).clamp(0, 1).contiguous()


_TORCH_VIEW = {np.dtype(np.uint32): np.int32, np.dtype(np.uint16): np.int16, np.dtype(np.uint8): np.uint8}


def _gather(table: np.ndarray, idx: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``table[idx]`` for a flat table and a uint32 index array of any shape.

    torch's ``index_select`` is ~3x faster than ``np.take`` here and releases the GIL, so decoding
    and encoding threads keep running while a frame is graded.
    """
    kind = _TORCH_VIEW[table.dtype]
    flat_idx = torch.from_numpy(np.ascontiguousarray(idx).view(np.int32).reshape(-1))
    src = torch.from_numpy(table.view(kind))
    if out is None:
        out = np.empty(idx.shape, table.dtype)
    dst = torch.from_numpy(out.view(kind).reshape(-1)) if out.flags.c_contiguous else None
    if dst is not None:
        torch.index_select(src, 0, flat_idx, out=dst)
    else:
        out[...] = torch.index_select(src, 0, flat_idx).numpy().view(table.dtype).reshape(idx.shape)
    return out


def unbiased_nodes(table: torch.Tensor, top: float = 1.0) -> torch.Tensor:
    """A table ``(C, N, N, N)`` of a smooth function's values at its nodes, moved so that trilinear lookups
    between the nodes err to neither side: each node less a twelfth of its second differences along the
    three axes (for a quadratic, the mean of a trilinear lookup over a cell exceeds the function's own by
    ``h^2 f''/12`` per axis; cross terms are exact). A node on a face of the cube is not moved along the
    axis it ends; values stay in [0, ``top``]. For tables sampled from a curved chain (OCIO's display
    views), not for a LUT's own nodes.

    >>> x = torch.linspace(0, 1, 5) ** 2
    >>> t = unbiased_nodes(x.expand(3, 5, 5, 5).contiguous())
    >>> [round(float(v), 4) for v in t[0, 0, 0, 1:4]]
    [0.0521, 0.2396, 0.5521]
    """
    second = torch.zeros_like(table)
    for axis in (1, 2, 3):
        n = table.shape[axis]
        mid = second.narrow(axis, 1, n - 2)
        mid += table.narrow(axis, 2, n - 2) + table.narrow(axis, 0, n - 2) - 2 * table.narrow(axis, 1, n - 2)
    return (table - second / 12).clamp_(0, top)


def _expand(small: torch.Tensor, out: np.ndarray) -> np.ndarray:
    """Expand ``(C, n, n, n)`` values in [0, 255] to every 8-bit code, into ``out`` ``(256**3, >=C)`` uint8.

    ``small``'s axes must already run (slowest, middle, fastest) = (third, second, first) code of
    the index ``c0 | c1 << 8 | c2 << 16``; channel k lands in column k of ``out``. Trilinear, done
    separably: the two fast axes on the small grid first (cheap), then the slowest axis as one
    linear pass over the 256**3 values, a channel at a time (temporaries near 64 MiB); a third
    less work than a 3D interpolation, same values.
    """
    c, n = small.shape[0], small.shape[1]
    with torch.inference_mode():
        flat = small.float().reshape(c * n, 1, n, n)
        planes = F.interpolate(flat, size=(256, 256), mode="bilinear", align_corners=True).reshape(c, n, 256 * 256)
        for k in range(c):
            big = F.interpolate(planes[k][None, None], size=(256, 256 * 256), mode="bilinear", align_corners=True)
            col = big.reshape(-1).add_(0.5).clamp_(0, 255).to(torch.uint8).numpy()
            if out.shape[1] == 1:
                out[:, 0] = col
            else:
                out[:, k] = col
            del big
    return out


class PackedTable:
    """A LUT expanded to every 8-bit RGB code value, packed as ``uint32`` (64 MiB).

    Applying it to an 8-bit RGBA frame is one gather per pixel (the four bytes of an RGBA pixel,
    read as a little-endian ``uint32`` with alpha masked off, are the index ``r | g << 8 | b << 16``).
    Build costs ~0.4 s; one per shot.
    """

    def __init__(self, lut: torch.Tensor) -> None:
        # our LUTs are indexed [c, r, g, b]; the table's axes must run (b, g, r)
        packed = np.full((256**3, 4), 255, np.uint8)  # RGBA bytes: one little-endian uint32 each
        self.table = _expand(lut.permute(0, 3, 2, 1).clamp(0, 1) * 255, packed).view(np.uint32).reshape(-1)

    def apply_rgba(self, rgba: np.ndarray) -> np.ndarray:
        """Grade an 8-bit RGBA frame ``(H, W, 4)``; returns a new ``(H, W, 4)`` array."""
        idx = rgba.view(np.uint32)[..., 0] & np.uint32(0x00FFFFFF)
        out = _gather(self.table, idx)
        return out.view(np.uint8).reshape(rgba.shape)


class U16Table:
    """A LUT as OpenColorIO's CPU ``Lut3D`` op, trilinear, 16-bit code values in and out.

    A 16-bit frame cannot use a table of every code (:class:`PackedTable`): it needs interpolation per
    pixel. OCIO's op does it in integer-friendly SIMD and releases the GIL: a 1080p frame takes ~30 ms on
    one core, against ~115 ms for ``grid_sample`` on two (BENCHMARKS.md), and the frame is split between
    two threads. It agrees with :func:`apply_lut` (float) within one 16-bit code. Building one costs
    ~0.01 s for 65 points, ~0.1 s for 129.
    """

    def __init__(self, lut: torch.Tensor) -> None:
        import PyOpenColorIO as ocio

        n = lut.shape[-1]
        data = np.ascontiguousarray(lut.detach().cpu().float().permute(1, 2, 3, 0).numpy())  # [r, g, b, c]: OCIO
        transform = ocio.Lut3DTransform(gridSize=n)
        transform.setData(data.reshape(-1))
        transform.setInterpolation(ocio.INTERP_LINEAR)
        processor = ocio.Config.CreateRaw().getProcessor(transform)
        depth = ocio.BIT_DEPTH_UINT16
        self._cpu = processor.getOptimizedCPUProcessor(depth, depth, ocio.OPTIMIZATION_DEFAULT)
        self._desc = ocio.PackedImageDesc
        self._depth = ocio.BIT_DEPTH_UINT16

    def _apply_inplace(self, band: np.ndarray) -> None:
        h, w = band.shape[:2]
        self._cpu.apply(self._desc(band, w, h, 3, self._depth, 2, 6, w * 6))

    def apply(self, rgb16: np.ndarray, rows: int = 256) -> np.ndarray:
        """Grade a 16-bit RGB frame ``(H, W, 3)`` (outputs clipped to the code range); returns a new array.
        Bands of ``rows`` rows go to two threads when the frame is large and the machine has two cores."""
        out = np.array(rgb16, dtype=np.uint16, order="C", copy=True)
        if out.ndim != 3 or out.shape[2] != 3:
            raise ValueError(f"expected a 16-bit RGB frame (H, W, 3), got shape {out.shape}")
        if out.size == 0:
            return out
        rows = max(1, rows)
        bands = [out[y : y + rows] for y in range(0, out.shape[0], rows)]
        pool = _u16_pool() if out.shape[0] * out.shape[1] >= 200_000 and len(bands) > 1 else None
        if pool is None:
            for band in bands:
                self._apply_inplace(band)
        else:
            list(pool.map(self._apply_inplace, bands))
        return out


@functools.lru_cache(maxsize=1)
def _u16_pool():
    """The two threads that 16-bit frames are split between (None on a one-core machine)."""
    import concurrent.futures
    import os

    workers = min(2, os.cpu_count() or 1)
    if workers < 2:
        return None
    return concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="grade-lut16")


_U16_TABLES: dict[tuple[int, int | float], tuple[U16Table, object]] = {}
_U16_LOCK = threading.Lock()


def _version(lut: torch.Tensor) -> int | float:
    """What changes when ``lut`` is written to: its version counter, or for an inference tensor (which has
    none) a sum over a strided sample of its entries (a change to the whole table, not to one node)."""
    try:
        return lut._version
    except RuntimeError:
        return float(lut.detach().reshape(-1)[::997].double().sum())


def u16_table(lut: torch.Tensor) -> U16Table:
    """The :class:`U16Table` of ``lut``, built on first use and kept while ``lut`` lives (a shot's table
    is asked for on every frame); an in-place change to ``lut`` builds a new one."""
    import weakref

    key = (id(lut), _version(lut))
    with _U16_LOCK:
        held = _U16_TABLES.get(key)
        if held is not None and held[1]() is lut:
            return held[0]
    table = U16Table(lut)
    with _U16_LOCK:
        stale = [k for k in _U16_TABLES if k[0] == id(lut)]
        for k in stale:
            del _U16_TABLES[k]
        _U16_TABLES[key] = (table, weakref.ref(lut))
    weakref.finalize(lut, _U16_TABLES.pop, key, None)
    return table


OCIO_MAX_GRID = 129  # the largest 3D LUT OpenColorIO's Lut3DTransform takes (a .cube may hold up to 256)


def apply_lut_u16(lut: torch.Tensor, rgb16: np.ndarray, rows: int = 256) -> np.ndarray:
    """Grade a 16-bit RGB frame ``(H, W, 3)`` through ``lut`` (trilinear, as :func:`apply_lut`, within one
    16-bit code of it), in bands of ``rows`` rows: :class:`U16Table`, or for a table of more than
    :data:`OCIO_MAX_GRID` points :func:`apply_lut_u16_float`."""
    if lut.shape[-1] > OCIO_MAX_GRID:
        return apply_lut_u16_float(lut, rgb16, max(1, rows))
    return u16_table(lut).apply(rgb16, rows)


def apply_lut_u16_float(lut: torch.Tensor, rgb16: np.ndarray, rows: int = 256) -> np.ndarray:
    """:func:`apply_lut_u16` through ``grid_sample`` in float32 (the reference it is checked against)."""
    out = np.empty_like(rgb16)
    with torch.inference_mode():
        for y in range(0, rgb16.shape[0], rows):
            band = torch.from_numpy(rgb16[y : y + rows].astype(np.float32) / 65535.0).permute(2, 0, 1)[None]
            res = apply_lut(lut, band)[0].permute(1, 2, 0)
            out[y : y + rows] = (res.clamp(0, 1) * 65535.0 + 0.5).to(torch.int32).numpy().astype(np.uint16)
    return out


# BT.* luma coefficients (Kr, Kb) by swscale colourspace id (see grade.io.video.yuv_matrix).
_KR_KB = {1: (0.2126, 0.0722), 4: (0.30, 0.11), 5: (0.299, 0.114), 7: (0.212, 0.087), 9: (0.2627, 0.0593)}


@functools.lru_cache(maxsize=32)
def yuv_affine(matrix: int, full_range: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(P, q)`` with ``R'G'B' = P @ (Y, Cb, Cr) + q`` for 8-bit code values (``P`` ``(3, 3)``, ``q`` ``(3,)``,
    float64), R'G'B' in [0, 1] before any clipping. Cached (asked for on every frame): do not modify them."""
    kr, kb = _KR_KB.get(matrix, _KR_KB[1])
    kg = 1 - kr - kb
    # (Y', Cb', Cr') in [0, 1] x [-0.5, 0.5]^2 -> R'G'B'
    rot = torch.tensor(
        [[1, 0, 2 * (1 - kr)], [1, -2 * kb * (1 - kb) / kg, -2 * kr * (1 - kr) / kg], [1, 2 * (1 - kb), 0]],
        dtype=torch.float64,
    )
    scale, offset = ((255, 255, 255), (0, 128, 128)) if full_range else ((219, 224, 224), (16, 128, 128))
    p = rot / torch.tensor(scale, dtype=torch.float64)
    return p, -p @ torch.tensor(offset, dtype=torch.float64)


def yuv_to_rgb(yuv: torch.Tensor, matrix: int, full_range: bool) -> torch.Tensor:
    """8-bit code values ``(..., 3)`` (Y, Cb, Cr) -> R'G'B' in [0, 1] (clipped)."""
    p, q = yuv_affine(matrix, full_range)
    return (yuv @ p.T.to(yuv.dtype) + q.to(yuv.dtype)).clamp(0, 1)


def rgb_to_yuv(rgb: torch.Tensor, matrix: int, full_range: bool) -> torch.Tensor:
    """R'G'B' in [0, 1] ``(..., 3)`` -> 8-bit code values (float, unrounded)."""
    p, q = yuv_affine(matrix, full_range)
    inv = torch.linalg.inv(p)
    return (rgb - q.to(rgb.dtype)) @ inv.T.to(rgb.dtype)


class YuvTable:
    """A LUT composed with the source's YCbCr matrix and range, expanded to every 8-bit (Y, Cb, Cr).

    Grades 8-bit 4:2:0 frames without converting them to RGB and back (which costs more than the
    grade itself): luma samples are looked up with the chroma of their 2x2 block, chroma samples
    with the mean luma of their block. Tables are indexed ``Y | Cb << 8 | Cr << 16``.
    """

    def __init__(self, lut: torch.Tensor, matrix: int, full_range: bool, grid: int = 33) -> None:
        self._build(lambda rgb: apply_lut(lut, rgb.T.reshape(1, 3, -1, 1))[0, :, :, 0].T, matrix, full_range, grid)

    @classmethod
    def from_colours(cls, grade_rgb, matrix: int, full_range: bool, grid: int = 129) -> YuvTable:
        """The table of any colour mapping ``grade_rgb``: R'G'B' ``(P, 3)`` float32 in [0, 1] -> ``(P, 3)``,
        evaluated at the ``grid``-point (Y, Cb, Cr) nodes themselves (a colour pipeline through OCIO's
        processors: no second resampling of a 3D LUT, which a steep display transform does not survive),
        the nodes :func:`unbiased_nodes` (a curved chain; a LUT's own table is kept as it is)."""
        self = cls.__new__(cls)

        def graded(rgb: torch.Tensor) -> torch.Tensor:
            out = np.asarray(grade_rgb(rgb.numpy().astype(np.float32)), np.float32)
            return torch.from_numpy(out).double()

        self._build(graded, matrix, full_range, grid, unbiased=True)
        return self

    def _build(self, grade_rgb, matrix: int, full_range: bool, grid: int, unbiased: bool = False) -> None:
        """The tables of ``grade_rgb`` (R'G'B' ``(P, 3)`` tensor -> ``(P, 3)``) at ``grid``-point nodes."""
        with torch.inference_mode():
            axis = torch.linspace(0, 255, grid)
            cr, cb, y = torch.meshgrid(axis, axis, axis, indexing="ij")  # index order of the table
            yuv = torch.stack([y, cb, cr], -1).reshape(-1, 3)
            rgb = yuv_to_rgb(yuv, matrix, full_range)
            graded = grade_rgb(rgb)  # (grid^3, 3)
            # the grade as a change of code values: identity stays exact, and values outside the RGB
            # gamut (super-whites, illegal chroma) keep what lies beyond it
            delta = rgb_to_yuv(graded, matrix, full_range) - rgb_to_yuv(rgb.to(graded.dtype), matrix, full_range)
            small = (yuv + delta.to(yuv.dtype)).T.reshape(3, grid, grid, grid)
            if unbiased:
                small = unbiased_nodes(small.contiguous(), 255.0)
        # luma alone (16 MiB) for the full-resolution lookups; Cb | Cr << 8 (32 MiB) for the chroma ones
        self.luma = _expand(small[:1], np.empty((256**3, 1), np.uint8)).reshape(-1)
        self.chroma = _expand(small[1:], np.empty((256**3, 2), np.uint8)).view(np.uint16).reshape(-1)
        self._scratch = threading.local()  # per-thread scratch planes: frames may be graded on several threads

    def apply_yuv420(self, planes: np.ndarray, height: int, width: int) -> np.ndarray:
        """Grade a yuv420p frame as PyAV lays it out: ``(H * 3 // 2, W)`` uint8 (even H and W)."""
        import cv2

        h2, w2 = height // 2, width // 2
        y = planes[:height]
        cb, cr = planes[height:].reshape(2, h2, w2)
        scratch = self._scratch
        if getattr(scratch, "shape", None) != (height, width):
            # index planes kept between frames (fresh 2-8 MiB arrays cost page faults every frame)
            scratch.shape = (height, width)
            scratch.luma = np.empty((h2, 2, width), np.int32)
            scratch.zeros = np.zeros((h2, w2), np.uint8)
            scratch.uv = np.empty((h2, w2, 4), np.uint8)
            scratch.chroma = np.empty((h2, w2), np.int32)
        # Cb << 8 | Cr << 16 of each 2x2 block (little-endian bytes 0, Cb, Cr, 0), widened to the luma's
        # columns and added to both of its rows: no full-size chroma plane or channel merge
        uv = cv2.merge([scratch.zeros, cb, cr, scratch.zeros], dst=scratch.uv).view(np.int32)[..., 0]
        wide = cv2.resize(uv, (width, h2), interpolation=cv2.INTER_NEAREST)
        np.add(y.reshape(h2, 2, width), wide[:, None, :], out=scratch.luma, dtype=np.int32)
        out = np.empty_like(planes)
        _gather(self.luma, scratch.luma.view(np.uint32), out=out[:height].reshape(h2, 2, width))
        # chroma samples with the mean luma of their block
        ym = cv2.resize(y, (w2, h2), interpolation=cv2.INTER_AREA)
        np.add(uv, ym, out=scratch.chroma, dtype=np.int32)
        c = _gather(self.chroma, scratch.chroma.view(np.uint32)).view(np.uint8).reshape(h2, w2, 2)
        oc = out[height:].reshape(2, h2, w2)
        cv2.split(c, [oc[0], oc[1]])
        return out
