"""IPAC product files for the import tests.

The only real IPAC products at hand are one science quadrant and its mask
(``ztf_20200924431759_000655_zr_c13_o_q3_{sciimg,mskimg}.fits``, fetched by the ``real_images``
fixture). Everything else here is **written by the tests**, with the layout and keywords of the
real products as far as they are known (ZTF_REFERENCE 1.4; the psfcat columns of IPAC's
refpsfcat readers; SExtractor's column names of IPAC's sexcat), and with pixels cut from the
real quadrant where pixels are needed:

* :func:`crop_real` -- a sub-image of the real sciimg and mskimg, real header, WCS shifted
  (real pixels, real keywords: only the size differs from IRSA's files);
* :func:`make_reference` -- a "reference" made from the real quadrant: a larger sub-image,
  convolved to a broader PSF, scaled to another zero point, sky removed, with refimg keywords
  and name; its refunc is the propagated noise and its refcov a constant depth;
* :func:`write_psfcat`, :func:`write_sexcat`, :func:`write_diff_fz` -- catalogues and a
  tile-compressed difference image with IPAC's layout, from the real header.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from scipy import ndimage

STEM = "ztf_20200924431759_000655_zr_c13_o_q3"
REF_STEM = "ztf_000655_zr_c13_q3"
NIGHT = "2020-09-24"
#: IPAC's ids of the real quadrant (its header's EXPID and DBPID).
EXPID, PID = 136243177, 1362431775015


def read_real(real_images: Path, suffix: str) -> tuple[np.ndarray, fits.Header]:
    with fits.open(real_images / f"{STEM}_{suffix}.fits", memmap=False) as h:
        return np.asarray(h[0].data), h[0].header.copy()


def shifted(header: fits.Header, x0: int, y0: int) -> fits.Header:
    """The header of a sub-image starting at 0-based pixel (x0, y0): CRPIX moved (TPV kept)."""
    h = header.copy()
    h["CRPIX1"] = float(h["CRPIX1"]) - x0
    h["CRPIX2"] = float(h["CRPIX2"]) - y0
    return h


def crop_real(real_images: Path, dest: Path, x0: int, y0: int, n: int,
              data: np.ndarray | None = None) -> tuple[Path, Path]:
    """Real sciimg and mskimg cut to ``n x n`` at (x0, y0), under their real names in ``dest``.

    ``data`` replaces the science pixels of the cut (e.g. with fakes added).
    """
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for suffix in ("sciimg", "mskimg"):
        arr, h = read_real(real_images, suffix)
        cut = arr[y0:y0 + n, x0:x0 + n]
        if suffix == "sciimg" and data is not None:
            cut = data.astype(np.float32)
        if "CRPIX1" in h:
            h = shifted(h, x0, y0)
        p = dest / f"{STEM}_{suffix}.fits"
        fits.PrimaryHDU(np.ascontiguousarray(cut), h).writeto(p, overwrite=True)
        out.append(p)
    return out[0], out[1]


def reference_header(sci_header: fits.Header, magzp: float, x0: int, y0: int,
                     seeing_px: float = 3.0) -> fits.Header:
    """Keywords of a reference image: identity and WCS of the quadrant, MAGZP, NFRAMES, the
    input span as JDSTART/JDEND (the names zsds writes: which keywords a real IPAC refimg uses
    for its span is not known here), SEEING in pixels as IPAC writes it; no exposure keywords
    (EXPID, OBSJD...)."""
    h = fits.Header()
    for key in ("ORIGIN", "TELESCOP", "INSTRUME", "FIELDID", "FILTERID", "FILTER", "CCDID",
                "QID", "RCID", "PIXSCALE", "GAIN", "READNOI", "SATURATE"):
        if key in sci_header:
            h[key] = (sci_header[key], sci_header.comments[key])
    wcs_keys = [k for k in sci_header if k.startswith(("CTYPE", "CRPIX", "CRVAL", "CUNIT", "CD1_",
                                                       "CD2_", "PV1_", "PV2_", "RADESYS",
                                                       "WCSAXES"))]
    for key in wcs_keys:
        h[key] = (sci_header[key], sci_header.comments[key])
    h = shifted(h, x0, y0)
    h["MAGZP"] = (magzp, "Magnitude zero point [mag]")
    h["NFRAMES"] = (15, "number of frames co-added")
    h["JDSTART"] = (2458300.5, "JD of the earliest input")
    h["JDEND"] = (2458700.5, "JD of the latest input")
    h["SEEING"] = (round(seeing_px, 3), "seeing FWHM [pixels]")
    return h


def make_reference(real_images: Path, dest: Path, x0: int, y0: int, n: int,
                   sigma: float = 1.2, scale: float = 2.0) -> dict[str, Path]:
    """A reference made from the real quadrant: the ``n x n`` cut at (x0, y0), convolved with
    a Gaussian of ``sigma`` px (a broader PSF), sky removed, scaled by ``scale`` (MAGZP + 2.5
    log10 scale); refunc the propagated noise, refcov 15 everywhere."""
    dest.mkdir(parents=True, exist_ok=True)
    sci, h = read_real(real_images, "sciimg")
    cut = sci[y0:y0 + n, x0:x0 + n].astype(np.float64)
    gain, rn = float(h["GAIN"]), float(h["READNOI"])
    var = np.maximum(cut, 0) / gain + (rn / gain) ** 2
    sky = float(np.median(cut))
    smooth = ndimage.gaussian_filter(cut - sky, sigma, mode="nearest")
    # Variance of a Gaussian-smoothed white noise: var * sum(k^2) = var / (4 pi sigma^2).
    unc = np.sqrt(ndimage.gaussian_filter(var, sigma, mode="nearest") / (4 * np.pi * sigma**2))
    seeing = float(np.hypot(float(h["SEEING"]), 2.3548 * sigma))
    hdr = reference_header(h, float(h["MAGZP"]) + 2.5 * np.log10(scale), x0, y0, seeing)
    out = {}
    for suffix, arr in (("refimg", smooth * scale), ("refunc", unc * scale)):
        p = dest / f"{REF_STEM}_{suffix}.fits"
        fits.PrimaryHDU(arr.astype(np.float32), hdr).writeto(p, overwrite=True)
        out[suffix] = p
    p = dest / f"{REF_STEM}_refcov.fits"
    fits.PrimaryHDU(np.full(cut.shape, 15, np.int16), hdr).writeto(p, overwrite=True)
    out["refcov"] = p
    return out


def psfcat_table(n: int, seed: int = 0) -> Table:
    """A table with IPAC's psfcat columns (values arbitrary but typed as IPAC's)."""
    rng = np.random.default_rng(seed)
    flux = rng.uniform(100, 1e5, n)
    return Table({
        "sourceid": np.arange(1, n + 1, dtype=np.int32),
        "xpos": rng.uniform(1, 512, n), "ypos": rng.uniform(1, 512, n),
        "ra": rng.uniform(57.8, 58.2, n), "dec": rng.uniform(35.6, 35.9, n),
        "flux": flux, "sigflux": np.sqrt(flux), "mag": 26.285 - 2.5 * np.log10(flux),
        "sigmag": 1.0857 / np.sqrt(flux), "snr": np.sqrt(flux),
        "chi": rng.uniform(0.5, 2, n), "sharp": rng.normal(0, 0.1, n),
        "flags": np.zeros(n, np.int16),
    })


def catalogue_header(sci_header: fits.Header) -> fits.Header:
    h = fits.Header()
    for key in ("FIELDID", "FILTERID", "CCDID", "QID", "MAGZP", "MAGZPRMS", "INFOBITS"):
        h[key] = (sci_header[key], sci_header.comments[key])
    return h


def write_psfcat(path: Path, sci_header: fits.Header, n: int = 50,
                 drop: str | None = None) -> Path:
    """A psfcat-layout file: header-only primary with the image's identity, table in HDU 1."""
    t = psfcat_table(n)
    if drop:
        t.remove_column(drop)
    fits.HDUList([fits.PrimaryHDU(header=catalogue_header(sci_header)),
                  fits.BinTableHDU(t)]).writeto(path, overwrite=True)
    return path


def write_sexcat(path: Path, sci_header: fits.Header, n: int = 50) -> Path:
    """A sexcat-layout file: SExtractor's column names (NUMBER, X_IMAGE, ..., MAG_APER vector)
    in a plain binary table at HDU 1, as IPAC's readers (ztfimg) read it."""
    rng = np.random.default_rng(1)
    t = Table({
        "NUMBER": np.arange(1, n + 1, dtype=np.int32),
        "X_IMAGE": rng.uniform(1, 512, n), "Y_IMAGE": rng.uniform(1, 512, n),
        "ALPHAWIN_J2000": rng.uniform(57.8, 58.2, n),
        "DELTAWIN_J2000": rng.uniform(35.6, 35.9, n),
        "MAG_AUTO": rng.uniform(14, 21, n), "MAGERR_AUTO": rng.uniform(0.01, 0.2, n),
        "MAG_APER": rng.uniform(14, 21, (n, 6)), "FLAGS": np.zeros(n, np.int16),
        "FWHM_IMAGE": rng.uniform(1.5, 3, n),
    })
    fits.HDUList([fits.PrimaryHDU(header=catalogue_header(sci_header)),
                  fits.BinTableHDU(t)]).writeto(path, overwrite=True)
    return path


def write_diff_fz(path: Path, sci_header: fits.Header, data: np.ndarray) -> Path:
    """An fpacked difference image: header-only primary, RICE-compressed float image at HDU 1
    carrying the science image's keywords and WCS."""
    h = sci_header.copy()
    for key in ("SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND"):
        h.remove(key, ignore_missing=True)
    fits.HDUList([fits.PrimaryHDU(),
                  fits.CompImageHDU(data.astype(np.float32), header=h,
                                    compression_type="RICE_1")]).writeto(path, overwrite=True)
    return path
