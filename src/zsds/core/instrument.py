"""The ZTF camera: focal-plane geometry, readout amplifiers and filters.

Everything the simulator and the pipelines need to know about the instrument lives here, in one
place. Geometry comes from the real CCD layout shipped by the ``ztffields`` package (corner
positions of the 16 CCDs on the focal plane, in degrees); per-amplifier electronics (gain,
read noise, bias level, full well) are a fixed, documented realisation drawn once from the
published ZTF values (Bellm et al. 2019, Table 1: gain 5.8 e-/ADU, read noise 10.3 e-),
because the per-amplifier tables of the real camera are not public.

Conventions
-----------
* ``ccdid`` 1..16, ``qid`` 1..4, ``rcid = 4 * (ccdid - 1) + qid - 1`` (0..63), as ZTF defines them.
* Focal-plane coordinates ``(ew, ns)`` in degrees as in ``ztf_ccd_layout.tbl``; ``ew`` increases to
  the West and ``ns`` to the North, so a science image with x along +ew and y along +ns is displayed
  North up, East left.
* Within a CCD the quadrants sit as ``q2 | q1`` above ``q3 | q4``. Each amplifier reads out from the
  outer corner of its quadrant; the raw readout order is therefore the science orientation flipped
  along x and/or y (:func:`raw_flip`).
"""

from __future__ import annotations

import enum
import functools
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Science pixels per readout quadrant (numpy shape is (QUAD_NY, QUAD_NX)).
QUAD_NX = 3072
QUAD_NY = 3080
#: Overscan columns per quadrant in the raw file (extensions 5-8).
OVERSCAN_NX = 30
#: Overscan columns the floating-bias estimate uses: the first ones carry the readout transient.
OVERSCAN_GOOD = slice(10, 30)
N_CCD = 16
N_QUAD = 4
#: Mean plate scale (arcsec / pixel), Bellm et al. 2019.
PIXEL_SCALE = 1.012
#: 15 micron pixels.
PIXEL_SIZE_UM = 15.0
EXPTIME = 30.0
READOUT_TIME = 8.0
CADENCE = 45.0
FILTER_CHANGE_TIME = 135.0
#: ADC range (16-bit unsigned).
ADC_MAX = 65535
#: Allowed small quadrant sizes for tests and demos (square, even, FFT friendly).
SMALL_SIZES = (256, 384, 512, 768, 1024, 1536)

#: Palomar Observatory, MPC code I41.
SITE_LON_DEG = -116.8599
SITE_LAT_DEG = 33.3564
SITE_HEIGHT_M = 1712.0
OBSCODE = "I41"

#: Optical distortion of the Schmidt focal plane: ideal = observed * (1 + k |observed|^2) with
#: radii in degrees. 4e-5 deg^-2 moves the corner of the mosaic by ~18 arcsec and leaves ~0.3
#: arcsec of non-linear residual across a single quadrant, so astrometry needs a distortion fit.
DISTORTION_K = 4.0e-5


class Filter(enum.Enum):
    """ZTF filters with their ids, codes and nominal photometric properties."""

    g = 1
    r = 2
    i = 3

    @property
    def fid(self) -> int:
        return self.value

    @property
    def code(self) -> str:
        """Filter code used in file names (``zg``, ``zr``, ``zi``)."""
        return "z" + self.name

    @property
    def props(self) -> FilterProps:
        return FILTER_PROPS[self]

    @classmethod
    def parse(cls, value: str | int | Filter) -> Filter:
        """Accept ``"g"``, ``"zg"``, ``1`` or a Filter; raise ValueError otherwise."""
        if isinstance(value, Filter):
            return value
        if isinstance(value, int | np.integer):
            return cls(int(value))
        text = str(value).strip().lower()
        if text.startswith("z") and len(text) == 2:
            text = text[1]
        if text.isdigit():
            return cls(int(text))
        try:
            return cls[text]
        except KeyError:
            raise ValueError(f"unknown ZTF filter {value!r} (use g, r or i)") from None


@dataclass(frozen=True)
class FilterProps:
    """Nominal photometric properties of a filter.

    Attributes
    ----------
    pivot_wavelength : float
        Angstrom, from the P48 filter curves.
    zp_e_per_s : float
        Magnitude giving 1 e-/s at airmass 0 with full transparency (telescope throughput).
    extinction : float
        Atmospheric extinction, mag per airmass.
    sky_mag : float
        Dark-sky brightness, mag / arcsec^2 at zenith.
    colour_term : float
        ``m_ZTF = m_PS1 + colour_term * colour`` with colour PS1 g-r (g, r) or r-i (i). The
        pipeline's CLRCOEFF estimates ``-colour_term``.
    colour_bands : tuple[str, str]
        PS1 bands forming the colour.
    """

    pivot_wavelength: float
    zp_e_per_s: float
    extinction: float
    sky_mag: float
    colour_term: float
    colour_bands: tuple[str, str]


FILTER_PROPS: dict[Filter, FilterProps] = {
    # Zero points chosen so that a 30 s exposure at airmass 1.2 gives MAGZP(DN) ~ 26.3 (r), as in
    # real alerts (magzpsci 26.1-26.4), with a 5-sigma depth near 20.6-20.8 at 2" seeing.
    Filter.g: FilterProps(4799.0, 24.75, 0.20, 21.8, 0.06, ("g", "r")),
    Filter.r: FilterProps(6406.0, 24.65, 0.11, 21.0, -0.08, ("g", "r")),
    Filter.i: FilterProps(7871.0, 24.10, 0.06, 20.2, -0.03, ("r", "i")),
}


@dataclass(frozen=True)
class Amplifier:
    """Electronics of one readout quadrant (amplifier).

    Attributes
    ----------
    ccdid, qid, rcid : int
        Identifiers (rcid = 4 (ccdid - 1) + qid - 1).
    gain : float
        e- / ADU.
    read_noise : float
        e- rms.
    bias_level : float
        ADU, mean level of the bias.
    full_well : float
        e-; charge beyond it bleeds along the column.
    dark_current : float
        e- / s / pixel (negligible for ZTF's cooled CCDs but kept in the header).
    """

    ccdid: int
    qid: int
    rcid: int
    gain: float
    read_noise: float
    bias_level: float
    full_well: float
    dark_current: float

    @property
    def saturate_adu(self) -> float:
        """Raw DN at which the pixel is saturated (full well above the bias), the SATURATE key."""
        return min(self.bias_level + self.full_well / self.gain, ADC_MAX)


def rcid_of(ccdid: int, qid: int) -> int:
    """Readout-channel id 0..63 from CCD 1..16 and quadrant 1..4."""
    check_ccd_quad(ccdid, qid)
    return 4 * (ccdid - 1) + qid - 1


def ccd_quad_of(rcid: int) -> tuple[int, int]:
    """Inverse of :func:`rcid_of`."""
    if not 0 <= rcid < 64:
        raise ValueError(f"rcid must be 0..63, got {rcid}")
    return rcid // 4 + 1, rcid % 4 + 1


def check_ccd_quad(ccdid: int, qid: int | None = None) -> None:
    """Raise ValueError with a clear message for an invalid CCD or quadrant id."""
    if not 1 <= int(ccdid) <= N_CCD:
        raise ValueError(f"CCD id must be 1..16, got {ccdid}")
    if qid is not None and not 1 <= int(qid) <= N_QUAD:
        raise ValueError(f"quadrant id must be 1..4, got {qid}")


@functools.cache
def amplifiers() -> dict[int, Amplifier]:
    """The 64 amplifiers, keyed by rcid (a fixed realisation; the seed is part of the model)."""
    rng = np.random.default_rng(np.random.SeedSequence([20180317, 1]))
    amps = {}
    for rcid in range(64):
        ccdid, qid = ccd_quad_of(rcid)
        amps[rcid] = Amplifier(
            ccdid=ccdid,
            qid=qid,
            rcid=rcid,
            gain=float(np.round(rng.normal(5.8, 0.25), 3)),
            read_noise=float(np.round(rng.normal(10.3, 0.8), 2)),
            bias_level=float(np.round(rng.uniform(600.0, 1100.0), 1)),
            full_well=float(np.round(rng.uniform(2.9e5, 3.4e5), -3)),
            dark_current=0.0,
        )
    return amps


def amplifier(ccdid: int, qid: int) -> Amplifier:
    """Amplifier of one CCD quadrant."""
    return amplifiers()[rcid_of(ccdid, qid)]


def raw_flip(qid: int) -> tuple[bool, bool]:
    """Whether the raw readout of a quadrant is flipped along (y, x) relative to the science image.

    The amplifier of each quadrant sits at the outer corner of the CCD and reads out from there:
    q1 (upper right) is flipped in x and y, q2 (upper left) in y, q3 (lower left) not at all and
    q4 (lower right) in x.
    """
    check_ccd_quad(1, qid)
    return {1: (True, True), 2: (True, False), 3: (False, False), 4: (False, True)}[qid]


def to_raw_orientation(science: np.ndarray, qid: int) -> np.ndarray:
    """Reorder a science-oriented quadrant array into readout order (a view, no copy)."""
    fy, fx = raw_flip(qid)
    return science[:: -1 if fy else 1, :: -1 if fx else 1]


def from_raw_orientation(raw: np.ndarray, qid: int) -> np.ndarray:
    """Inverse of :func:`to_raw_orientation` (the flips are their own inverse)."""
    return to_raw_orientation(raw, qid)


def quadrant_offset(qid: int, nx: int = QUAD_NX, ny: int = QUAD_NY) -> tuple[int, int]:
    """Pixel offset (x0, y0) of a quadrant's science image inside its CCD (q2|q1 over q3|q4)."""
    check_ccd_quad(1, qid)
    return {1: (nx, ny), 2: (0, ny), 3: (0, 0), 4: (nx, 0)}[qid]


def _layout_path() -> str:
    import ztffields

    return os.path.join(os.path.dirname(ztffields.__file__), "data", "ztf_ccd_layout.tbl")


@dataclass(frozen=True)
class CCDPlacement:
    """Affine map from CCD pixels (full-size, 0-based, x along +ew) to focal-plane degrees.

    ``(ew, ns) = center + matrix @ (x - 3071.5, y - 3079.5)``; ``matrix`` holds the plate scale,
    the small rotation and the non-orthogonality of the real CCD corner positions.
    """

    ccdid: int
    center: np.ndarray
    matrix: np.ndarray


@functools.cache
def ccd_placements() -> dict[int, CCDPlacement]:
    """Placement of each CCD, fitted to the corner positions of the real ZTF layout."""
    table = pd.read_csv(_layout_path())
    table.columns = [c.strip() for c in table.columns]
    out = {}
    # Corners in the file run (low ew, low ns), (low ew, high ns), (high ew, high ns),
    # (high ew, low ns); the pixel positions of those corners are fixed by the CCD size.
    nx, ny = 2 * QUAD_NX, 2 * QUAD_NY
    px = np.array([[-0.5, -0.5], [-0.5, ny - 0.5], [nx - 0.5, ny - 0.5], [nx - 0.5, -0.5]])
    px -= np.array([(nx - 1) / 2, (ny - 1) / 2])
    for ccdid, grp in table.groupby("CCD"):
        fp = grp[["EW", "NS"]].to_numpy(float)
        design = np.column_stack([np.ones(4), px])
        coef, *_ = np.linalg.lstsq(design, fp, rcond=None)
        out[int(ccdid)] = CCDPlacement(int(ccdid), coef[0], coef[1:].T.copy())
    return out


def quadrant_pixel_to_focal_plane(
    ccdid: int, qid: int, x: np.ndarray, y: np.ndarray, nx: int = QUAD_NX, ny: int = QUAD_NY
) -> tuple[np.ndarray, np.ndarray]:
    """Map quadrant science pixels (0-based) to focal-plane (ew, ns) degrees.

    For small simulated quadrants (``nx, ny`` smaller than full size) the quadrant keeps the
    plate scale of the real camera and sits at the centre of the corresponding full-size
    quadrant, so that the same physics (PSF variation, distortion) applies.
    """
    place = ccd_placements()[ccdid]
    x0, y0 = quadrant_offset(qid)
    # Centre the (possibly small) quadrant inside the full-size one.
    cx = x0 + (QUAD_NX - nx) / 2.0
    cy = y0 + (QUAD_NY - ny) / 2.0
    ccd_x = np.asarray(x, float) + cx - (2 * QUAD_NX - 1) / 2.0
    ccd_y = np.asarray(y, float) + cy - (2 * QUAD_NY - 1) / 2.0
    ew = place.center[0] + place.matrix[0, 0] * ccd_x + place.matrix[0, 1] * ccd_y
    ns = place.center[1] + place.matrix[1, 0] * ccd_x + place.matrix[1, 1] * ccd_y
    return ew, ns


def quadrant_affine(
    ccdid: int, qid: int, nx: int = QUAD_NX, ny: int = QUAD_NY
) -> tuple[np.ndarray, np.ndarray]:
    """Linear map of a quadrant: ``fp = offset + matrix @ (x, y)`` in degrees."""
    ew0, ns0 = quadrant_pixel_to_focal_plane(ccdid, qid, np.array(0.0), np.array(0.0), nx, ny)
    return np.array([float(ew0), float(ns0)]), ccd_placements()[ccdid].matrix.copy()
