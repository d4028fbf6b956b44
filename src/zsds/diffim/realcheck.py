"""zsds's subtraction stage on a real reference/new pair (GOTO-North, ``zsds eval real``).

Both images go through the same steps as a ZTF quadrant: PSF and PSF catalogue by
:func:`zsds.instcal.stage.measure_sources`, then :func:`zsds.diffim.stage.subtract` (ZOGY) and
:func:`zsds.diffim.candidates.measure_candidates`. The sources present only in the new image
are found independently of ZOGY: ``sep`` detections at >= 10 sigma in the new image with no
detection (>= 3 sigma) within 3 px in the reference, away from the edges.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import sep
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from scipy.spatial import cKDTree

from zsds.core.image import QuadrantImage
from zsds.core.masks import MASK_DTYPE
from zsds.diffim.candidates import measure_candidates
from zsds.diffim.stage import subtract
from zsds.instcal.realcheck import Check
from zsds.instcal.stage import InstCalConfig, measure_sources

__all__ = ["check_goto_pair", "new_only_sources"]

#: A common zero point for both images: their flux ratio is then fitted on stars (FLXRATIO).
_ZP = 25.0
#: Edge margin (pixels) of the sources counted.
_EDGE = 16


def _image(path: Path, config: InstCalConfig) -> tuple[QuadrantImage, pd.DataFrame]:
    """A real image with its PSF and variance, and its PSF catalogue; the gain is estimated
    from the sky (sky level over sky variance) when the header has none, as the GOTO files
    have none."""
    with fits.open(path, memmap=False) as h:
        data = np.nan_to_num(np.asarray(h[0].data, np.float32))
        hdr = h[0].header.copy()
    bkg = sep.Background(np.ascontiguousarray(data))
    gain = float(hdr.get("GAIN", bkg.globalback / bkg.globalrms**2))
    rn = float(hdr.get("READNOI", 0.0))
    variance = (np.maximum(data, 0.0) / gain + (rn / gain) ** 2).astype(np.float32)
    saturate = float(hdr.get("SATURATE", 0.9 * data.max()))
    m = measure_sources(data, variance, np.zeros(data.shape, MASK_DTYPE), gain, rn, saturate,
                        float(hdr.get("SEEING", 3.0)), config)
    if m.psf is None:
        raise ValueError(f"{path}: no PSF could be built")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(hdr)
    hdr["MAGZP"], hdr["GAIN"], hdr["READNOI"] = _ZP, gain, rn
    # The catalogue columns subtraction reads: 1-based xpos/ypos, sky position, S/N.
    ra, dec = wcs.all_pix2world(m.psfcat["x"].to_numpy(), m.psfcat["y"].to_numpy(), 0)
    cat = m.psfcat.assign(snr=m.psfcat["flux"] / m.psfcat["fluxerr"], xpos=m.psfcat["x"] + 1,
                          ypos=m.psfcat["y"] + 1, ra=ra, dec=dec)
    return QuadrantImage(data, variance, m.mask, wcs, m.psf, hdr), cat


def new_only_sources(reference: np.ndarray, new: np.ndarray) -> np.ndarray:
    """(x, y) of sources in ``new`` (>= 10 sigma) with no reference detection within 3 px."""
    out = []
    for a, thresh in ((reference, 3.0), (new, 5.0)):
        a = np.ascontiguousarray(a, np.float32)
        b = sep.Background(a)
        out.append((sep.extract(a - b.back(), thresh, err=b.globalrms), b.globalrms))
    (ref, _), (obj, rms) = out
    d, _ = cKDTree(np.c_[ref["x"], ref["y"]]).query(np.c_[obj["x"], obj["y"]])
    snr = obj["flux"] / (rms * np.sqrt(obj["npix"]))
    ny, nx = new.shape
    keep = (d > 3) & (snr > 10) & (obj["x"] > _EDGE) & (obj["x"] < nx - _EDGE)
    keep &= (obj["y"] > _EDGE) & (obj["y"] < ny - _EDGE)
    return np.c_[obj["x"][keep], obj["y"][keep]]


def check_goto_pair(reference: Path, new: Path, config: InstCalConfig | None = None
                    ) -> list[Check]:
    """Subtract a real reference from a real new image; every new source must be found."""
    config = config or InstCalConfig()
    ref, ref_cat = _image(reference, config)
    sci, sci_cat = _image(new, config)
    truth = new_only_sources(ref.data, sci.data)
    diff = subtract(sci, ref, sci_cat=sci_cat, ref_cat=ref_cat)
    cand = measure_candidates(diff)
    pos = cand[cand["isdiffpos"] == "t"] if len(cand) else cand
    if len(pos):
        d, _ = cKDTree(np.c_[pos["x"], pos["y"]]).query(truth)
    else:
        d = np.full(len(truth), np.inf)
    found = int(np.sum(d < 2.0))
    # Positive candidates that are none of those sources: subtraction residuals and noise.
    if len(pos) and len(truth):
        dd, _ = cKDTree(truth).query(np.c_[pos["x"], pos["y"]])
        other = int(np.sum(dd >= 2.0))
    else:
        other = len(pos)
    return [
        Check("GOTO pair: new sources found by ZOGY", found / max(len(truth), 1), "1 (all)",
              found == len(truth) and len(truth) > 0,
              f"{found} of {len(truth)}; {other} other positive candidates"),
    ]
