"""The image object every pipeline stage passes around.

A :class:`QuadrantImage` carries the pixels of one readout quadrant together with everything
needed to interpret them: per-pixel variance, the ZTF bit mask, the WCS (TAN-SIP), a PSF model and
the FITS header. It holds no I/O code; readers and writers live at the edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from zsds.core.instrument import Filter, check_ccd_quad, rcid_of
from zsds.core.masks import MASK_DTYPE, MaskBit
from zsds.core.naming import pid_of, sci_product
from zsds.core.psf import PSFModel


@dataclass(frozen=True)
class QuadrantId:
    """Identifies one readout quadrant of one exposure.

    Attributes
    ----------
    expid : int
        Exposure id (see :mod:`zsds.core.naming`).
    filefracday : str
        ``YYYYMMDDffffff`` of the exposure.
    field : int
        ZTF field id.
    filt : Filter
    ccdid, qid : int
    """

    expid: int
    filefracday: str
    field: int
    filt: Filter
    ccdid: int
    qid: int

    def __post_init__(self) -> None:
        check_ccd_quad(self.ccdid, self.qid)

    @property
    def rcid(self) -> int:
        return rcid_of(self.ccdid, self.qid)

    @property
    def pid(self) -> int:
        return pid_of(self.expid, self.ccdid, self.qid)

    def product(self, suffix: str) -> PurePosixPath:
        """Path of a science product of this quadrant relative to the home."""
        return sci_product(self.filefracday, self.field, self.filt, self.ccdid, self.qid, suffix)


@dataclass
class QuadrantImage:
    """Pixels of one quadrant plus variance, mask, WCS, PSF and header.

    Attributes
    ----------
    data : ndarray (ny, nx) float32
        Pixel values (DN unless the header's BUNIT says otherwise).
    variance : ndarray (ny, nx) float32 or None
        Per-pixel variance in data units squared.
    mask : ndarray (ny, nx) int16 or None
        ZTF mask bits (:class:`zsds.core.masks.MaskBit`).
    wcs : astropy.wcs.WCS or None
    psf : PSFModel or None
    header : astropy.io.fits.Header
    qid : QuadrantId or None
    """

    data: np.ndarray
    variance: np.ndarray | None = None
    mask: np.ndarray | None = None
    wcs: WCS | None = None
    psf: PSFModel | None = None
    header: fits.Header = field(default_factory=fits.Header)
    id: QuadrantId | None = None

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data, dtype=np.float32)
        if self.data.ndim != 2:
            raise ValueError(f"image data must be 2-D, got shape {self.data.shape}")
        if self.variance is not None:
            self.variance = np.asarray(self.variance, dtype=np.float32)
            self._check_shape(self.variance, "variance")
        if self.mask is None:
            self.mask = np.zeros(self.data.shape, MASK_DTYPE)
        else:
            self.mask = np.asarray(self.mask).astype(MASK_DTYPE, copy=False)
            self._check_shape(self.mask, "mask")

    def _check_shape(self, arr: np.ndarray, name: str) -> None:
        if arr.shape != self.data.shape:
            raise ValueError(f"{name} shape {arr.shape} differs from data shape {self.data.shape}")

    @property
    def shape(self) -> tuple[int, int]:
        return self.data.shape  # type: ignore[return-value]

    def copy(self) -> QuadrantImage:
        """Deep copy of pixels, header and WCS (the PSF model is immutable and shared)."""
        return QuadrantImage(
            self.data.copy(),
            None if self.variance is None else self.variance.copy(),
            self.mask.copy(),
            None if self.wcs is None else self.wcs.deepcopy(),
            self.psf,
            self.header.copy(),
            self.id,
        )

    def add_mask(self, where: np.ndarray, bit: MaskBit) -> None:
        """Set ``bit`` where ``where`` is True."""
        self.mask[where] |= MASK_DTYPE(int(bit))

    def cutout(self, x0: int, y0: int, nx: int, ny: int) -> QuadrantImage:
        """A sub-image (copy) starting at pixel (x0, y0); the WCS is shifted accordingly."""
        sl = (slice(y0, y0 + ny), slice(x0, x0 + nx))
        wcs = None
        if self.wcs is not None:
            wcs = self.wcs.slice(sl)
        return QuadrantImage(
            self.data[sl].copy(),
            None if self.variance is None else self.variance[sl].copy(),
            self.mask[sl].copy(),
            wcs,
            self.psf,
            self.header.copy(),
            self.id,
        )

    def __deepcopy__(self, memo: dict) -> QuadrantImage:
        return self.copy()


__all__ = ["Filter", "QuadrantId", "QuadrantImage", "input_variance"]


def input_variance(img: QuadrantImage) -> np.ndarray:
    """Per-pixel variance of an input (DN^2).

    The image's own ``variance`` if present, else ``max(data, 0) / GAIN + (READNOI / GAIN)^2``
    from the header (data must include the sky), else ``SKYSIG^2`` everywhere.
    """
    if img.variance is not None:
        return img.variance
    h = img.header
    if "GAIN" in h and "READNOI" in h:
        gain, rn = float(h["GAIN"]), float(h["READNOI"])
        return (np.maximum(img.data, 0.0) / gain + (rn / gain) ** 2).astype(np.float32)
    if "SKYSIG" in h:
        return np.full(img.shape, float(h["SKYSIG"]) ** 2, np.float32)
    raise ValueError("input has no variance map and no GAIN/READNOI or SKYSIG header keywords")


def extract_stamps(
    image: np.ndarray, ix: np.ndarray, iy: np.ndarray, half: int, fill=0.0
) -> np.ndarray:
    """(N, 2 half + 1, 2 half + 1) cut-outs centred on integer pixels; outside -> ``fill``."""
    pad = np.pad(image, half, constant_values=fill)
    g = np.arange(-half, half + 1)
    return pad[
        (iy + half)[:, None, None] + g[None, :, None], (ix + half)[:, None, None] + g[None, None, :]
    ]
