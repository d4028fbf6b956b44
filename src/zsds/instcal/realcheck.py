"""zsds's image steps on a real ZTF quadrant, measured against what IPAC wrote for it.

:func:`check_real_quadrant` runs :func:`zsds.instcal.stage.measure_sources` (masks found in
the image, background, extraction, PSF, PSF-fit photometry) on an IPAC ``sciimg`` with its
``mskimg`` and compares the results with the numbers IPAC put in the header and mask, and with
fake stars injected with the fitted PSF. Each result is a :class:`Check` (value, bar, pass).
``zsds eval real`` prints them; the tests assert them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits
from scipy.spatial import cKDTree

from zsds.core.masks import BAD_PIXEL_BITS, MASK_DTYPE, MaskBit, clean_flags
from zsds.core.photometry import flux_to_mag
from zsds.core.stats import robust_std
from zsds.instcal.masking import saturation_mask
from zsds.instcal.stage import InstCalConfig, SourceMeasurement, measure_sources

__all__ = ["Check", "check_real_quadrant", "read_ipac_quadrant"]

@dataclass(frozen=True)
class Check:
    """One real-data check: a measured value against its bar."""

    name: str
    value: float
    bar: str
    ok: bool
    note: str = ""


@dataclass
class IpacQuadrant:
    """An IPAC science quadrant as the image steps need it."""

    data: np.ndarray  # flat-fielded DN, sky included
    variance: np.ndarray
    mask: np.ndarray  # IPAC bits, plus zsds's saturation
    header: fits.Header
    ipac_mask: np.ndarray  # the mask as IPAC wrote it


def read_ipac_quadrant(sciimg: Path, mskimg: Path) -> IpacQuadrant:
    """Read an IPAC ``sciimg``/``mskimg`` pair (variance from the header's GAIN, READNOI)."""
    with fits.open(sciimg, memmap=False) as h:
        data = np.asarray(h[0].data, np.float32)
        hdr = h[0].header.copy()
    with fits.open(mskimg, memmap=False) as h:
        ipac = np.asarray(h[0].data).astype(MASK_DTYPE)
    if ipac.shape != data.shape:
        raise ValueError(f"{mskimg}: shape {ipac.shape} differs from {sciimg} {data.shape}")
    for key in ("GAIN", "READNOI", "SATURATE", "SEEING"):
        if key not in hdr:
            raise ValueError(f"{sciimg}: no {key} keyword")
    gain, rn = float(hdr["GAIN"]), float(hdr["READNOI"])
    variance = (np.maximum(data, 0.0) / gain + (rn / gain) ** 2).astype(np.float32)
    mask = ipac.copy()
    sat = saturation_mask(data, float(hdr["SATURATE"]), InstCalConfig().mask)
    mask[sat] |= MASK_DTYPE(int(MaskBit.SATURATED))
    bad = ~np.isfinite(data)
    mask[bad] |= MASK_DTYPE(int(MaskBit.NAN))
    data[bad] = 0.0
    return IpacQuadrant(data, variance, mask, hdr, ipac)


def _mag(flux: np.ndarray) -> np.ndarray:
    """Instrumental magnitude (NaN where the flux is not positive)."""
    flux = np.asarray(flux, np.float64)
    return flux_to_mag(flux, np.zeros_like(flux), 0.0)[0]


def _measure(q: IpacQuadrant, data: np.ndarray, config: InstCalConfig) -> SourceMeasurement:
    h = q.header
    # IPAC's SEEING is in pixels (its own comment says so), unlike zsds's raw headers.
    return measure_sources(data, q.variance, q.mask, float(h["GAIN"]), float(h["READNOI"]),
                           float(h["SATURATE"]), float(h["SEEING"]), config)


def _matched(m: SourceMeasurement) -> pd.DataFrame:
    """PSF-fit rows with the aperture fluxes of their detection (nearest within 0.5 px)."""
    p = m.psfcat
    d, j = cKDTree(np.c_[m.sexcat["x"], m.sexcat["y"]]).query(np.c_[p["x"], p["y"]])
    s = m.sexcat.iloc[j].reset_index(drop=True)
    out = p.assign(flux_aper_6=s["flux_aper_6"].to_numpy(), peak=s["peak"].to_numpy(),
                   flux_aper_14=s["flux_aper_14"].to_numpy(), dmatch=d)
    return out[out["dmatch"] < 0.5].reset_index(drop=True)


def _inject(q: IpacQuadrant, m: SourceMeasurement, n: int, seed: int
            ) -> tuple[np.ndarray, pd.DataFrame]:
    """The image with ``n`` fake stars drawn with the fitted PSF (and their photon noise) on
    empty sky, S/N 10-50; returns it and the fakes (x, y, flux, snr)."""
    rng = np.random.default_rng(seed)
    ny, nx = q.data.shape
    psf = m.psf
    taken = cKDTree(np.c_[m.sexcat["x"], m.sexcat["y"]])
    bad = (q.mask & BAD_PIXEL_BITS) != 0
    xs, ys = [], []
    while len(xs) < n:
        x, y = rng.uniform(20, nx - 20), rng.uniform(20, ny - 20)
        if taken.query_ball_point([x, y], 10.0) or bad[round(y), round(x)]:
            continue
        if xs and np.hypot(np.array(xs) - x, np.array(ys) - y).min() < 20:
            continue
        xs.append(x)
        ys.append(y)
    x, y = np.array(xs), np.array(ys)
    gain = float(q.header["GAIN"])
    sky_var = float(m.background.global_rms) ** 2
    st = psf.stamps(x, y, 25)
    n_eff = 1.0 / np.sum(st.astype(np.float64) ** 2, axis=(1, 2))
    snr = rng.uniform(10.0, 50.0, n)
    # S/N = F / sqrt(n_eff sky_var + F / gain), solved for F.
    a = snr**2 / gain
    flux = 0.5 * (a + np.sqrt(a**2 + 4 * snr**2 * n_eff * sky_var))
    data = q.data.copy()
    h = 12
    for k in range(n):
        ix, iy = round(x[k]), round(y[k])
        model = flux[k] * st[k].astype(np.float64)
        noisy = rng.poisson(np.maximum(model, 0.0) * gain) / gain
        data[iy - h:iy + h + 1, ix - h:ix + h + 1] += noisy.astype(np.float32)
    return data, pd.DataFrame({"x": x, "y": y, "flux": flux, "snr": snr})


def check_real_quadrant(sciimg: Path, mskimg: Path, config: InstCalConfig | None = None,
                        n_fakes: int = 300, seed: int = 18) -> list[Check]:
    """The real-data checks on one IPAC quadrant (see ``docs/real-data.md``).

    PSF: effective FWHM (as recorded by the detector) against IPAC's SEEING, PSF stars used.
    PSF-fit photometry of S/N > 50 stars against IPAC's aperture correction (PSF mag - (6 px
    aperture mag + APCOR4)): median and robust scatter; its dependence on where a star falls
    in its pixel (centre minus corner); PSF-fit positions uniform in pixel phase. Masks:
    cosmic-ray pixels against IPAC's bit 7, star cores flagged, column defects, stars that
    subtraction can use for flux matching. Fakes injected with the fitted PSF: recovery at
    S/N >= 10 and PSF-mag offset.
    """
    config = config or InstCalConfig()
    q = read_ipac_quadrant(sciimg, mskimg)
    h = q.header
    ny, nx = q.data.shape
    m = _measure(q, q.data, config)
    if m.psf is None:
        raise ValueError(f"{sciimg}: no PSF could be built")
    checks: list[Check] = []
    fwhm = m.psf.measured_fwhm(nx / 2, ny / 2)
    seeing = float(h["SEEING"])
    checks.append(Check("PSF effective FWHM / header SEEING", fwhm / seeing, "within 10% of 1",
                        abs(fwhm / seeing - 1) <= 0.10,
                        f"{fwhm:.3f} px vs {seeing:.3f} px; before pixelisation "
                        f"{m.psf.fwhm_at(nx / 2, ny / 2):.3f} px, beta {m.psf.beta:.2f}"))
    checks.append(Check("PSF stars used", m.psf.nstars, ">= 200", m.psf.nstars >= 200))
    # PSF photometry against IPAC's aperture correction.
    p = _matched(m)
    snr = (p["flux"] / p["fluxerr"]).to_numpy()
    ok = (snr > 50) & clean_flags(p["flags"]) & (p["peak"].to_numpy() < 0.8 * h["SATURATE"])
    ok &= (p["flux_aper_6"].to_numpy() > 0) & (p["x"].between(10, nx - 10)
                                              & p["y"].between(10, ny - 10)).to_numpy()
    s = p[ok]
    dmag = (_mag(s["flux"].to_numpy())
            - (_mag(s["flux_aper_6"].to_numpy()) + float(h["APCOR4"])))
    med = float(np.median(dmag))
    rsd = robust_std(dmag)
    checks.append(Check("PSF mag - (aperture mag + APCOR4): median", med, "|x| <= 0.02 mag",
                        abs(med) <= 0.02, f"{len(s)} stars with S/N > 50"))
    checks.append(Check("PSF mag - (aperture mag + APCOR4): robust scatter", rsd,
                        "<= 0.03 mag", rsd <= 0.03))
    fx = s["x"].to_numpy() - np.round(s["x"].to_numpy())
    fy = s["y"].to_numpy() - np.round(s["y"].to_numpy())
    r = np.hypot(fx, fy)  # 0 at the pixel centre, 0.71 at a corner
    centre, corner = dmag[r < 0.2], dmag[r > 0.5]
    phase = float(np.median(centre) - np.median(corner))
    checks.append(Check("pixel phase: centre minus corner", phase, "|x| <= 0.01 mag",
                        abs(phase) <= 0.01, f"{len(centre)} centred, {len(corner)} cornered"))
    near = float(np.mean((np.abs(fx) < 0.15) & (np.abs(fy) < 0.15)) / 0.09)
    checks.append(Check("PSF-fit positions within 0.15 px of a pixel centre / uniform", near,
                        "0.7-1.3", 0.7 <= near <= 1.3, "uniform phases put 9% there"))
    # Masks.
    ipac_cr = int(((q.ipac_mask & int(MaskBit.SPIKE)) != 0).sum())
    ours_cr = int(((m.mask & int(MaskBit.SPIKE)) != 0).sum())
    checks.append(Check("cosmic-ray pixels / IPAC's (bit 7)", ours_cr / max(ipac_cr, 1),
                        "<= 2", ours_cr <= 2 * ipac_cr, f"{ours_cr} vs {ipac_cr} px"))
    spike = (m.mask & int(MaskBit.SPIKE)) != 0
    # Star-like (a PSF fit as good as most) S/N > 50 sources away from the image edge.
    star = (snr > 50) & (p["chi"].to_numpy() < 3 * np.nanmedian(p["chi"].to_numpy()[snr > 50]))
    star &= (p["x"].between(5, nx - 6) & p["y"].between(5, ny - 6)).to_numpy()
    sx, sy = np.round(p["x"].to_numpy()[star]).astype(int), np.round(
        p["y"].to_numpy()[star]).astype(int)
    ipac_spike = (q.ipac_mask & int(MaskBit.SPIKE)) != 0
    hit = [spike[y - 1:y + 2, x - 1:x + 2].any() for x, y in zip(sx, sy, strict=True)]
    # A source IPAC also calls a cosmic ray in its core is not counted as a star.
    also = [ipac_spike[y - 1:y + 2, x - 1:x + 2].any() for x, y in zip(sx, sy, strict=True)]
    cores = int(sum(h_ and not a for h_, a in zip(hit, also, strict=True)))
    checks.append(Check("star cores (S/N > 50) flagged as cosmic rays", cores, "0",
                        cores == 0, f"of {int(star.sum())} stars; {int(sum(hit)) - cores} more "
                        "where IPAC's bit 7 is set too (not counted)"))
    cols = (m.mask & int(MaskBit.NOISY | MaskBit.LOW_RESPONSIVITY)) != 0
    cols &= (q.ipac_mask & int(MaskBit.NOISY | MaskBit.LOW_RESPONSIVITY)) == 0
    flagged = np.flatnonzero(cols.any(axis=0))
    interior = flagged[(flagged >= 3) & (flagged < nx - 3)]
    checks.append(Check("column defects flagged away from the edges", len(interior), "0",
                        len(interior) == 0,
                        f"all flagged columns: {', '.join(map(str, flagged)) or 'none'}"))
    usable = p[(snr > 20)]
    frac = float(np.mean(clean_flags(usable["flags"]))) if len(usable) else 0.0
    checks.append(Check("S/N > 20 stars usable for flux matching", frac, ">= 0.9", frac >= 0.9,
                        f"of {len(usable)}"))
    # Fakes injected with the fitted PSF.
    fdata, fakes = _inject(q, m, n_fakes, seed)
    mf = _measure(q, fdata, config)
    cat = mf.psfcat
    d, j = cKDTree(np.c_[cat["x"], cat["y"]]).query(np.c_[fakes["x"], fakes["y"]])
    found = d < 1.0
    rec = float(found.mean())
    checks.append(Check("fakes recovered (S/N 10-50)", rec, ">= 0.95", rec >= 0.95,
                        f"{int(found.sum())} of {len(fakes)}"))
    got = cat.iloc[j[found]]
    off = float(np.median(_mag(got["flux"].to_numpy())
                          - _mag(fakes["flux"].to_numpy()[found])))
    checks.append(Check("fakes: PSF mag - true mag (median)", off, "|x| <= 0.02 mag",
                        abs(off) <= 0.02))
    return checks
