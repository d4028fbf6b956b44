"""Partial fast Radon transform (FRT): sums along every digital line segment of dyadic length.

The dyadic recursion of Brady (1998), Götz & Druckmüller (1995) and Press (2006), in the
"partial transform" form used for streaks by Nir, Zackay & Ofek (2018, AJ 156:229): level ``k``
holds, for every block of ``w = 2**k`` consecutive columns, every rise ``s = 0..w-1`` and every
starting row ``y``, the sum of the image along the digital line from ``(X, y)`` to
``(X + w - 1, y + s)``. Level ``k`` is built from level ``k - 1`` with one addition per element,
so all slopes and all lengths up to ``2**kmax`` cost ``O(N kmax)`` instead of one correlation per
(angle, length) kernel. Applied to a PSF-smoothed, noise-normalised image, each sum is the
matched-filter response of a PSF-broadened line segment; dividing by :func:`line_noise` turns it
into a signal-to-noise ratio.

Only slopes ``dy/dx`` in ``[0, 1]`` are covered by one transform; :func:`octant_views` gives the
four flipped/transposed views that cover all directions, and :func:`octant_to_image` maps segment
end points back.

Besides the aligned blocks (start columns multiple of ``w``), every level is also evaluated on
blocks shifted by ``w / 2``, which halves the worst-case loss for a streak that straddles two
blocks.

All functions are pure; arrays are float32.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = [
    "FrtLevel",
    "frt_levels",
    "line_noise",
    "line_offsets",
    "octant_to_image",
    "octant_views",
]


def line_offsets(kmax: int) -> list[np.ndarray]:
    """Row offsets of the digital lines used by the recursion, for levels ``0..kmax``.

    Parameters
    ----------
    kmax : int
        Highest level.

    Returns
    -------
    list of ndarray
        ``offsets[k]`` has shape ``(w, w)`` with ``w = 2**k``: ``offsets[k][s, i]`` is the row
        offset of column ``i`` of the line of total rise ``s`` (``offsets[k][s, -1] == s``).
    """
    offs = [np.zeros((1, 1), np.int64)]
    for k in range(1, kmax + 1):
        w = 1 << k
        s = np.arange(w)
        t = s // 2
        c = s - t
        prev = offs[-1]
        offs.append(np.concatenate([prev[t], c[:, None] + prev[t]], axis=1))
    return offs


def line_noise(offsets: np.ndarray, kernel1d: np.ndarray) -> np.ndarray:
    """Standard deviation of digital-line sums of white unit noise smoothed by ``kernel1d``.

    The image is assumed to be unit-variance white noise convolved with the separable kernel
    ``outer(kernel1d, kernel1d)``; the covariance of two smoothed pixels separated by
    ``(dx, dy)`` is then ``c(dx) c(dy)`` with ``c`` the autocorrelation of ``kernel1d``.

    Parameters
    ----------
    offsets : ndarray (w, w)
        Row offsets of the lines of one level (see :func:`line_offsets`).
    kernel1d : ndarray
        Odd-length 1-D smoothing kernel.

    Returns
    -------
    ndarray (w,)
        Noise standard deviation of the sum along each line (one per rise ``s``).
    """
    c = np.correlate(kernel1d, kernel1d, mode="full")
    r = len(kernel1d) - 1
    w = offsets.shape[1]
    var = np.zeros(offsets.shape[0])
    for d in range(min(r, w - 1) + 1):
        dy = np.abs(offsets[:, d:] - offsets[:, : w - d])
        cy = np.where(dy <= r, c[r + np.minimum(dy, r)], 0.0)
        var += (1.0 if d == 0 else 2.0) * c[r + d] * cy.sum(axis=1)
    return np.sqrt(var)


@dataclass(frozen=True)
class FrtLevel:
    """One level of the partial transform, for one set of blocks.

    Attributes
    ----------
    k : int
        Level; segments span ``w = 2**k`` columns.
    offset : int
        Column of the first block (0 for aligned blocks, ``w // 2`` for shifted ones).
    sums : ndarray (nblock, w, rows)
        ``sums[b, s, j]`` is the sum along the line from column ``offset + b * w``, padded row
        ``j``, with total rise ``s``. Padded row ``j`` is image row ``j - pad``.
    pad : int
        Rows of zero padding below the image.
    """

    k: int
    offset: int
    sums: np.ndarray
    pad: int


def _combine(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Next level from the previous level's left and right blocks (same count)."""
    nb, h, rows = left.shape
    w = 2 * h
    out = np.empty((nb, w, rows), np.float32)
    for t in range(h):
        lt = left[:, t, :]
        rt = right[:, t, :]
        for s in (2 * t, 2 * t + 1):
            c = s - t
            o = out[:, s, :]
            if c < rows:
                np.add(lt[:, : rows - c], rt[:, c:], out=o[:, : rows - c])
                o[:, rows - c :] = lt[:, rows - c :]
            else:
                o[...] = lt
    return out


def frt_levels(image: np.ndarray, kmax: int, kmin: int = 1) -> Iterator[FrtLevel]:
    """Partial fast Radon transform for slopes ``dy/dx`` in ``[0, 1]``.

    Parameters
    ----------
    image : ndarray (ny, nx)
        Input (typically a PSF-smoothed S/N image); converted to float32.
    kmax : int
        Highest level (segments of ``2**kmax`` columns).
    kmin : int
        Lowest level that is yielded (lower levels are still computed).

    Yields
    ------
    FrtLevel
        For each level ``kmin..kmax``: the aligned blocks, then the blocks shifted by half a
        block (the latter only when at least one fits). Arrays are reused by the caller only
        until the next item is requested.
    """
    ny, nx = image.shape
    wmax = 1 << kmax
    pad = wmax - 1
    ncol = -(-nx // wmax) * wmax
    rows = ny + pad
    base = np.zeros((ncol, 1, rows), np.float32)
    base[:nx, 0, pad:] = image.T
    cur = base
    for k in range(1, kmax + 1):
        nxt = _combine(cur[0::2], cur[1::2])
        if k >= kmin:
            yield FrtLevel(k, 0, nxt, pad)
            if cur.shape[0] >= 3:
                nh = (cur.shape[0] - 1) // 2
                half = _combine(cur[1 : 2 * nh : 2], cur[2 : 2 * nh + 1 : 2])
                yield FrtLevel(k, 1 << (k - 1), half, pad)
        cur = nxt


def octant_views(image: np.ndarray) -> list[np.ndarray]:
    """The four views of ``image`` whose ``[0, 1]``-slope lines cover all directions.

    View 0: the image (angles 0-45 deg from +x, counter-clockwise, y up); view 1: rows flipped
    (135-180); view 2: transposed (45-90); view 3: transposed then rows flipped (90-135).
    """
    t = image.T
    return [image, image[::-1], t, t[::-1]]


def octant_to_image(
    view: int, xv: np.ndarray, yv: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Map coordinates in octant view ``view`` back to image ``(x, y)`` (``shape = (ny, nx)``)."""
    ny, nx = shape
    if view == 0:
        return xv, yv
    if view == 1:
        return xv, (ny - 1) - yv
    if view == 2:
        return yv, xv
    if view == 3:
        return (nx - 1) - yv, xv
    raise ValueError(f"view must be 0..3, got {view}")


def threshold_level(
    level: FrtLevel,
    noise: np.ndarray,
    threshold: float,
    max_entries: int,
    chunk: int = 32,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Entries of one level above ``threshold`` (in S/N), one per ``chunk`` rows at most.

    Along the row axis only the maximum of each run of ``chunk`` starting rows is considered
    (sources closer than that along a block's column direction at the same rise merge), and it
    must be a local maximum over the neighbouring rises and rows.

    Parameters
    ----------
    level : FrtLevel
    noise : ndarray (w,)
        Noise of each rise (see :func:`line_noise`).
    threshold : float
        S/N threshold.
    max_entries : int
        Keep at most this many of the highest-S/N entries.
    chunk : int
        Rows per chunk.

    Returns
    -------
    block, rise, row, snr : ndarray
        Block index, rise, padded row and S/N of each kept entry.
    """
    sums = level.sums
    nb, w, rows = sums.shape
    inv = (1.0 / noise).astype(np.float32)
    thr = (threshold * noise).astype(np.float32)
    nc = rows // chunk
    main = sums[:, :, : nc * chunk].reshape(nb, w, nc, chunk)
    cmax = main.max(axis=3)
    if rows > nc * chunk:
        cmax = np.concatenate([cmax, sums[:, :, nc * chunk :].max(axis=2, keepdims=True)], axis=2)
    b, s, c = np.nonzero(cmax > thr[None, :, None])
    if len(b) == 0:
        e = np.zeros(0, np.int64)
        return e, e, e, np.zeros(0, np.float32)
    j0 = c * chunk
    seg = np.minimum(chunk, rows - j0)
    idx = j0[:, None] + np.arange(chunk)[None, :]
    vals = sums[b[:, None], s[:, None], np.minimum(idx, rows - 1)]
    vals = np.where(np.arange(chunk)[None, :] < seg[:, None], vals, -np.inf)
    j = j0 + np.argmax(vals, axis=1)
    snr = sums[b, s, j] * inv[s]
    keep = np.ones(len(b), bool)
    for ds in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if ds == 0 and dj == 0:
                continue
            s2 = np.clip(s + ds, 0, w - 1)
            j2 = np.clip(j + dj, 0, rows - 1)
            keep &= snr >= sums[b, s2, j2] * inv[s2]
    b, s, j, snr = b[keep], s[keep], j[keep], snr[keep]
    if len(snr) > max_entries:
        top = np.argpartition(-snr, max_entries)[:max_entries]
        b, s, j, snr = b[top], s[top], j[top], snr[top]
    return b, s, j, snr
