"""Astrometric calibration of a quadrant against the Gaia DR3 reference catalogue.

The raw header carries the commanded, distortion-free TAN WCS, which is off by the pointing error
(~3") and by the optical distortion (up to ~20" offset, ~0.3" non-linear across a quadrant). We
(1) find the bulk translation by voting on detection - reference pixel differences, then
(2) match with a k-d tree at decreasing radius, refitting a TAN-SIP WCS with sigma clipping.
The ZTF pipeline uses SCAMP/TPV; TAN-SIP represents the same cubic distortion exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS, Sip
from astropy.wcs.utils import fit_wcs_from_points
from scipy.ndimage import uniform_filter
from scipy.spatial import cKDTree

from zsds.core.stats import MAD_TO_SIGMA
from zsds.core.wcs import pixel_scale_arcsec, sip_inverse
from zsds.sky.refcat import propagate_to_epoch

__all__ = [
    "GAIA_EPOCH_MJD",
    "AstrometryConfig",
    "AstrometryResult",
    "propagate_refcat",
    "solve_astrometry",
]

#: Gaia DR3 reference epoch J2016.0 as MJD.
GAIA_EPOCH_MJD = 57388.5


@dataclass(frozen=True)
class AstrometryConfig:
    """Options of :func:`solve_astrometry`.

    ``match_radii_arcsec`` are the match radii of the successive match-and-fit iterations.
    When at least ``min_matches_sip`` matches are brighter than ``fit_mag``, only they enter
    the (unweighted) fit: faint stars' centroid noise would otherwise dominate a sparse
    field's solution. The rms is reported brighter than ``rms_mag``, where photon noise does
    not dominate.
    """

    sip_degree: int = 3  #: SIP distortion order (3 represents the radial camera distortion)
    bright_mag: float = 12.0  #: reference stars brighter than this G saturate on ZTF: left out
    faint_mag: float = 20.5  #: reference stars fainter than this G are left out (poor centroids)
    rms_mag: float = 19.0  #: reported rms from matched stars brighter than this G
    fit_mag: float = 19.5  #: only matches brighter than this G are fitted, if min_matches_sip
    n_vote: int = 300  #: brightest detections and reference stars in the offset vote
    search_radius_arcsec: float = 60.0  #: largest initial-WCS error the vote searches (arcsec)
    vote_cell_arcsec: float = 2.0  #: cell size of the vote histogram (arcsec)
    min_votes: int = 6  #: fewest pairs in the (3x3-smoothed) peak cell to accept an offset
    match_radii_arcsec: tuple[float, ...] = (5.0, 2.0, 1.0)  #: arcsec, per match-and-fit pass
    clip_sigma: float = 3.0  #: matches beyond this many robust rms are rejected before refitting
    min_matches: int = 8  #: fewest matches for a solution; below it the field fails
    min_matches_sip: int = 40  #: fewer matches fit a linear TAN WCS only (SIP underconstrained)
    max_fit_stars: int = 2000  #: most (brightest) matched stars in each SIP fit


@dataclass(frozen=True)
class AstrometryResult:
    """Outcome of :func:`solve_astrometry`.

    ``offset_arcsec`` is the translation found by the vote, in pixels of the initial WCS
    converted to arcsec.
    """

    wcs: WCS | None  #: fitted TAN-SIP WCS (astropy 0-based pixels); None: solve failed
    ok: bool  #: whether a solution was found
    message: str  #: summary, or why the solve failed
    n_ref: int = 0  #: reference stars (within the magnitude limits) on the image
    n_matches: int = 0  #: matches kept in the final fit
    rms_ra_arcsec: float = float("nan")  #: RA (x cos dec) rms residual, stars brighter than rms_mag
    rms_dec_arcsec: float = float("nan")  #: Dec rms residual, stars brighter than rms_mag
    #: ``(det_index, ref_index)``: positional indices into the detections and the ``ref`` table.
    matched: tuple[np.ndarray, np.ndarray] = field(
        default_factory=lambda: (np.empty(0, np.int64), np.empty(0, np.int64))
    )
    offset_arcsec: tuple[float, float] = (float("nan"), float("nan"))  #: vote's translation


def propagate_refcat(ref: pd.DataFrame, mjd: float) -> pd.DataFrame:
    """Move Gaia DR3 positions from their ``ref_epoch`` to an epoch by their proper motions.

    The one implementation is :func:`zsds.sky.refcat.propagate_to_epoch`, which the catalogue
    reader also applies (``RefCatalog.cone(..., epoch_mjd=...)``).

    Parameters
    ----------
    ref : pandas.DataFrame
        Gaia DR3 rows with ``ra``, ``dec`` (deg), ``pmra`` (mas/yr, includes cos dec),
        ``pmdec`` (mas/yr) and ``ref_epoch`` (Julian yr; 2016.0 if absent); missing proper
        motions count as zero.
    mjd : float
        Target epoch (MJD).

    Returns
    -------
    pandas.DataFrame
        A copy with ``ra``, ``dec`` at the epoch and ``ref_epoch`` set to it (so rows already
        at the epoch are unchanged). Linear in time (no parallax, no perspective acceleration:
        < 1 mas over a decade for all but the nearest stars).
    """
    return propagate_to_epoch(ref, mjd)


def _fail(message: str, n_ref: int = 0) -> AstrometryResult:
    return AstrometryResult(wcs=None, ok=False, message=message, n_ref=n_ref)


def _vote_offset(
    xd: np.ndarray, yd: np.ndarray, xr: np.ndarray, yr: np.ndarray, radius: float, cell: float
) -> tuple[float, float, int]:
    """Translation (pixels) detections - references from the peak of the pair-difference vote."""
    dx = (xd[:, None] - xr[None, :]).ravel()
    dy = (yd[:, None] - yr[None, :]).ravel()
    keep = dx**2 + dy**2 < radius**2
    dx, dy = dx[keep], dy[keep]
    nbin = int(np.ceil(2 * radius / cell))
    edges = np.linspace(-radius, radius, nbin + 1)
    hist, _, _ = np.histogram2d(dx, dy, bins=(edges, edges))
    # Smooth 3x3 so that a peak straddling cell edges (or smeared by scale errors) still wins.
    smooth = uniform_filter(hist, size=3, mode="constant") * 9.0
    ix, iy = np.unravel_index(np.argmax(smooth), smooth.shape)
    cx, cy = 0.5 * (edges[ix] + edges[ix + 1]), 0.5 * (edges[iy] + edges[iy + 1])
    near = (np.abs(dx - cx) < 1.5 * cell) & (np.abs(dy - cy) < 1.5 * cell)
    if not near.any():
        return cx, cy, 0
    return float(np.mean(dx[near])), float(np.mean(dy[near])), int(smooth[ix, iy])


def _match(
    xd: np.ndarray, yd: np.ndarray, xr: np.ndarray, yr: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one nearest-neighbour matches (det_index, ref_index) within ``radius`` pixels."""
    tree = cKDTree(np.column_stack([xd, yd]))
    dist, idet = tree.query(np.column_stack([xr, yr]), k=1, distance_upper_bound=radius)
    iref = np.flatnonzero(np.isfinite(dist))
    idet, dist = idet[iref], dist[iref]
    # A detection claimed by several references keeps only the closest one.
    order = np.argsort(dist)
    _, first = np.unique(idet[order], return_index=True)
    sel = order[first]
    return idet[sel], iref[sel]


def _fit(
    x: np.ndarray,
    y: np.ndarray,
    sky: SkyCoord,
    template: WCS,
    centre: SkyCoord,
    degree: int | None,
    shape: tuple[int, int],
) -> WCS:
    """TAN(-SIP) fit with CRVAL at ``centre``; the inverse SIP is fitted on a grid afterwards."""
    w = fit_wcs_from_points((x, y), sky, proj_point=centre, projection=template, sip_degree=degree)
    ny, nx = shape
    w.pixel_shape = (nx, ny)
    if w.sip is not None:
        # fit_wcs_from_points leaves AP/BP at zero; headers need the inverse for other tools.
        ap, bp = sip_inverse(w.sip.a, w.sip.b, w.wcs.crpix, nx, ny, order=degree + 1)
        w.sip = Sip(w.sip.a, w.sip.b, ap, bp, w.wcs.crpix)
    w.wcs.set()
    return w


def _residuals(w: WCS, x: np.ndarray, y: np.ndarray, ra: np.ndarray, dec: np.ndarray):
    """Fit residuals (arcsec) along RA (times cos dec) and Dec."""
    wra, wdec = w.all_pix2world(x, y, 0)
    dra = ((wra - ra + 180.0) % 360.0 - 180.0) * np.cos(np.deg2rad(dec)) * 3600.0
    return dra, (wdec - dec) * 3600.0


def solve_astrometry(
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    shape: tuple[int, int],
    initial_wcs: WCS,
    ref: pd.DataFrame,
    epoch_mjd: float,
    config: AstrometryConfig = AstrometryConfig(),
) -> AstrometryResult:
    """Fit a TAN-SIP WCS to detected sources by matching them to the Gaia DR3 catalogue.

    Parameters
    ----------
    x, y : numpy.ndarray
        0-based pixel positions of the detections (science orientation).
    flux : numpy.ndarray
        Detection fluxes, used only to rank sources for the offset vote.
    shape : tuple of int
        Image shape ``(ny, nx)``.
    initial_wcs : astropy.wcs.WCS
        Approximate WCS (the raw header's commanded linear TAN).
    ref : pandas.DataFrame
        Gaia DR3 rows (published names: ``ra``, ``dec`` at ``ref_epoch``, ``pmra``, ``pmdec``,
        ``phot_g_mean_mag``) covering the image (plus a margin of ``search_radius_arcsec``).
    epoch_mjd : float
        Epoch of the exposure; reference positions are propagated to it (a no-op for rows the
        reader already propagated, whose ``ref_epoch`` is the exposure's).
    config : AstrometryConfig

    Returns
    -------
    AstrometryResult
        ``ok=False`` with a message (never an exception) for fields that cannot be solved.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    flux = np.asarray(flux, np.float64)
    ny, nx = shape
    good = np.isfinite(x) & np.isfinite(y) & np.isfinite(flux)
    det_idx = np.flatnonzero(good)
    xd, yd, fd = x[good], y[good], flux[good]
    if len(ref) == 0:
        return _fail("no reference stars")

    scale = pixel_scale_arcsec(initial_wcs)
    margin = config.search_radius_arcsec / scale
    refp = propagate_refcat(ref, epoch_mjd)
    gmag = np.asarray(refp["phot_g_mean_mag"], np.float64)
    rra = np.asarray(refp["ra"], np.float64)
    rdec = np.asarray(refp["dec"], np.float64)
    xr, yr = initial_wcs.all_world2pix(rra, rdec, 0)
    usable = (gmag > config.bright_mag) & (gmag < config.faint_mag) & np.isfinite(xr)
    on_image = (xr > -0.5) & (xr < nx - 0.5) & (yr > -0.5) & (yr < ny - 0.5)
    n_ref = int(np.count_nonzero(usable & on_image))
    ref_idx = np.flatnonzero(usable & (xr > -margin) & (xr < nx + margin))
    ref_idx = ref_idx[(yr[ref_idx] > -margin) & (yr[ref_idx] < ny + margin)]
    if len(xd) < config.min_matches or n_ref < config.min_matches:
        return _fail(
            f"too few sources: {len(xd)} detections, {n_ref} reference stars "
            f"(need {config.min_matches})",
            n_ref,
        )

    # (1) Bulk translation from the brightest of each list.
    bd = np.argsort(-fd)[: config.n_vote]
    br = ref_idx[np.argsort(gmag[ref_idx])[: config.n_vote]]
    ox, oy, votes = _vote_offset(
        xd[bd], yd[bd], xr[br], yr[br], margin, config.vote_cell_arcsec / scale
    )
    offset = (ox * scale, oy * scale)
    if votes < config.min_votes:
        return _fail(f"no offset peak: best cell has {votes} < {config.min_votes} votes", n_ref)

    # (2) Match and refit with shrinking radius; predictions come from the latest fit.
    ny2, nx2 = (ny - 1) / 2.0, (nx - 1) / 2.0
    c_ra, c_dec = initial_wcs.all_pix2world(nx2 - ox, ny2 - oy, 0)
    centre = SkyCoord(float(c_ra), float(c_dec), unit="deg")
    template = WCS(naxis=2)
    template.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    template.wcs.crpix = [nx2 + 1.0, ny2 + 1.0]
    # PC (not CD): fit_wcs_from_points resets CDELT to 1 and moves PC into CD itself.
    template.wcs.pc = initial_wcs.pixel_scale_matrix
    template.wcs.radesys = "ICRS"
    sky_all = SkyCoord(rra[ref_idx], rdec[ref_idx], unit="deg")
    pxr, pyr = xr[ref_idx] + ox, yr[ref_idx] + oy
    w = None
    keep_d = keep_r = np.empty(0, np.int64)
    for radius in config.match_radii_arcsec:
        md, mr = _match(xd, yd, pxr, pyr, radius / scale)
        if len(md) < config.min_matches:
            return _fail(
                f'too few matches: {len(md)} within {radius}" (need {config.min_matches})', n_ref
            )
        base = gmag[ref_idx][mr] < config.fit_mag
        if base.sum() < config.min_matches_sip:
            base = np.ones(len(md), bool)
        if base.sum() > config.max_fit_stars:
            # Crowded fields: the brightest few thousand stars pin a cubic SIP down far below
            # the required accuracy; fitting all of them only costs time.
            order = np.argsort(gmag[ref_idx][mr])
            brightest = np.zeros(len(md), bool)
            brightest[order[base[order]][: config.max_fit_stars]] = True
            base = brightest
        sel = base.copy()
        # Fit, clip, refit once: each SIP fit costs ~0.3 s in fit_wcs_from_points, and the
        # next (smaller) radius rejects what is left.
        for npass in range(2):
            degree = config.sip_degree if sel.sum() >= config.min_matches_sip else None
            try:
                w = _fit(
                    xd[md[sel]], yd[md[sel]], sky_all[mr[sel]], template, centre, degree, shape
                )
            except (ValueError, np.linalg.LinAlgError) as exc:
                return _fail(f"WCS fit failed: {exc}", n_ref)
            if npass == 1:
                break
            dra, ddec = _residuals(w, xd[md], yd[md], rra[ref_idx][mr], rdec[ref_idx][mr])
            # Robust per-axis width (MAD) so that outliers do not inflate the threshold.
            sig = MAD_TO_SIGMA * np.array([np.median(np.abs(dra[base])),
                                           np.median(np.abs(ddec[base]))])
            sig = np.maximum(sig, 0.01)
            new = base & (np.abs(dra) < config.clip_sigma * sig[0]) & (
                np.abs(ddec) < config.clip_sigma * sig[1]
            )
            if new.sum() < config.min_matches:
                return _fail(f"too few matches after clipping: {new.sum()}", n_ref)
            if np.array_equal(new, sel):
                break
            sel = new
        keep_d, keep_r = md[sel], mr[sel]
        pxr, pyr = w.all_world2pix(rra[ref_idx], rdec[ref_idx], 0)

    dra, ddec = _residuals(w, xd[keep_d], yd[keep_d], rra[ref_idx][keep_r], rdec[ref_idx][keep_r])
    bright = gmag[ref_idx][keep_r] < config.rms_mag
    if bright.sum() < 3:
        bright = np.ones_like(bright)
    rms_ra = float(np.sqrt(np.mean(dra[bright] ** 2)))
    rms_dec = float(np.sqrt(np.mean(ddec[bright] ** 2)))
    kind = "TAN-SIP" if w.sip is not None else "TAN (too few matches for SIP)"
    return AstrometryResult(
        wcs=w,
        ok=True,
        message=(
            f"{kind}: {len(keep_d)} matches of {n_ref} reference stars, "
            f'rms {rms_ra:.3f}"/{rms_dec:.3f}" (RA/Dec)'
        ),
        n_ref=n_ref,
        n_matches=len(keep_d),
        rms_ra_arcsec=rms_ra,
        rms_dec_arcsec=rms_dec,
        matched=(det_idx[keep_d], ref_idx[keep_r]),
        offset_arcsec=offset,
    )
