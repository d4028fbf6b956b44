"""Relative photometric refinement of the epochs of one quadrant and filter.

Each epoch is calibrated on its own against PS1 (``MAGZP``), with an error of a few mmag to a
few hundredths (colour-term residuals, a finite number of calibrators, clouds). All epochs of a
quadrant see the same stars, so their relative zero points can be solved far better from the
light curves themselves: with the cleanest, least-variable sources as anchors,

    m_ij = M_i + z_j + e_ij,

a weighted linear least-squares problem for the star magnitudes ``M_i`` and the per-epoch
offsets ``z_j`` (the correction applied is ``-z_j``: one gain factor per image), with
``sum_j z_j = 0`` so that the absolute scale stays that of the PS1 calibration. It is solved
exactly (sparse normal equations with the star magnitudes eliminated), iterating to drop
outlying points and variable anchors. Then an empirical error model ``sigma^2 = (a sigma_phot)^2 +
sigma_sys^2`` is fitted to the anchors' scatter (``magerrmodel``, as in IPAC matchfiles) and
epochs whose calibration failed are flagged (``catflags`` bit 15).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix, diags

from zsds.core.stats import MAD_TO_SIGMA


@dataclass(frozen=True)
class RefineConfig:
    """Options of :func:`refine_zeropoints`."""

    min_snr: float = 30.0  #: least S/N of an anchor point (bright)
    max_snr: float = 2000.0  #: most S/N of an anchor point (saturation, non-linearity above)
    min_frac_epochs: float = 0.5  #: least share of epochs an anchor is cleanly detected in
    sys_floor: float = 0.002  #: weights' error floor (mag, quadrature): bright stars don't dominate
    clip: float = 4.0  #: points with |residual| > clip x their error dropped each iteration
    max_anchor_chi2: float = 3.0  #: anchors above this reduced chi-square are dropped (variables)
    iterations: int = 4  #: solve/clip cycles
    min_calibrators: int = 5  #: epochs with fewer anchors: not refined, flagged bad
    bad_rms_factor: float = 3.0  #: epochs with anchor rms above this x the median: flagged bad


@dataclass
class Refinement:
    """Result of :func:`refine_zeropoints`."""

    zp: np.ndarray  #: per epoch, correction added to its magnitudes and MAGZP (mag)
    zp_err: np.ndarray  #: its 1-sigma uncertainty (mag)
    ncalib: np.ndarray  #: anchors used per epoch
    rms: np.ndarray  #: robust rms (1.4826 MAD) of the anchors' residuals per epoch (mag)
    bad: np.ndarray  #: epochs judged bad (too few anchors or a far higher scatter)
    anchors: np.ndarray  #: object indices used as anchors at the end
    sys_err: float  #: fitted systematic floor of the error model (mag)
    err_scale: float  #: fitted scale of the photometric errors in the error model

    @property
    def gain_factor(self) -> np.ndarray:
        """Per-epoch flux factor ``10**(0.4 zp)`` equivalent to the magnitude correction."""
        return 10.0 ** (0.4 * self.zp)

    def error_model(self, magerr: np.ndarray) -> np.ndarray:
        """Empirical error of a point with photometric error ``magerr``."""
        return np.hypot(self.err_scale * np.asarray(magerr, float), self.sys_err)


def grouped_median(key: np.ndarray, value: np.ndarray, n: int) -> np.ndarray:
    """Median of ``value`` per integer ``key`` in [0, n) (NaN for empty groups), vectorised."""
    order = np.lexsort((value, key))
    k, v = key[order], value[order]
    count = np.bincount(k, minlength=n)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    out = np.full(n, np.nan)
    has = count > 0
    lo = start[has] + (count[has] - 1) // 2
    hi = start[has] + count[has] // 2
    out[has] = 0.5 * (v[lo] + v[hi])
    return out


def grouped_robust_std(key: np.ndarray, value: np.ndarray, n: int) -> np.ndarray:
    """1.4826 x median absolute deviation of ``value`` per ``key`` (NaN for empty groups)."""
    med = grouped_median(key, value, n)
    return MAD_TO_SIGMA * grouped_median(key, np.abs(value - med[key]), n)


def _solve(obj: np.ndarray, ep: np.ndarray, mag: np.ndarray, w: np.ndarray, n_obj: int,
           n_ep: int) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least squares for ``m = M_i + z_j`` with ``sum(z) = 0``, solved exactly.

    The star magnitudes are eliminated (each is the weighted mean of its points given z),
    which leaves the small dense (n_ep x n_ep) Schur-complement system for z: a direct solve
    instead of an iterative one over all points, and exact for any number of stars.
    """
    b = csr_matrix((w, (obj, ep)), shape=(n_obj, n_ep))
    bm = csr_matrix((w * mag, (obj, ep)), shape=(n_obj, n_ep))
    wi = np.asarray(b.sum(axis=1)).ravel()
    inv = diags(1.0 / np.maximum(wi, 1e-300))
    s_mat = np.diag(np.asarray(b.sum(axis=0)).ravel()) - (b.T @ inv @ b).toarray()
    rhs = (np.asarray(bm.sum(axis=0)).ravel()
           - b.T @ (inv @ np.asarray(bm.sum(axis=1)).ravel()))
    # S has the constant vector as null space; adding 1 1^T imposes sum(z) = 0.
    z = np.linalg.solve(s_mat + np.ones((n_ep, n_ep)) * s_mat.diagonal().mean(), rhs)
    m_i = (np.asarray(bm.sum(axis=1)).ravel() - b @ z) / np.maximum(wi, 1e-300)
    return m_i, z


def refine_zeropoints(
    obj: np.ndarray,
    epoch: np.ndarray,
    mag: np.ndarray,
    magerr: np.ndarray,
    good: np.ndarray,
    n_epochs: int,
    snr: np.ndarray | None = None,
    config: RefineConfig | None = None,
) -> Refinement:
    """Solve per-epoch zero-point corrections from the light curves of one quadrant/filter.

    Parameters
    ----------
    obj, epoch : numpy.ndarray
        Per point: object index (0..n_obj-1, reference sources only) and epoch index
        (0..n_epochs-1).
    mag, magerr : numpy.ndarray
        Per point: raw (per-epoch calibrated) magnitude and its photometric error.
    good : numpy.ndarray
        Per point: clean (no flags, finite).
    n_epochs : int
    snr : numpy.ndarray, optional
        Per point S/N (default ``1.0857 / magerr``).
    config : RefineConfig, optional

    Returns
    -------
    Refinement
        ``zp`` is zero for epochs that could not be refined.
    """
    cfg = config or RefineConfig()
    obj = np.asarray(obj, np.int64)
    epoch = np.asarray(epoch, np.int64)
    mag = np.asarray(mag, float)
    magerr = np.asarray(magerr, float)
    snr = 1.0857 / magerr if snr is None else np.asarray(snr, float)
    zero = np.zeros(n_epochs)
    use = (np.asarray(good, bool) & np.isfinite(mag) & np.isfinite(magerr) & (magerr > 0)
           & (snr >= cfg.min_snr) & (snr <= cfg.max_snr))
    n_obj = int(obj.max()) + 1 if obj.size else 0
    count = np.bincount(obj[use], minlength=n_obj)
    anchor = count >= max(3, cfg.min_frac_epochs * n_epochs)
    use &= anchor[obj] if n_obj else use
    z = zero.copy()
    w_all = 1.0 / (magerr**2 + cfg.sys_floor**2)
    for _ in range(cfg.iterations):
        if not use.any():
            break
        # Re-index the anchors compactly so the system has no empty rows.
        ids, o = np.unique(obj[use], return_inverse=True)
        m_i, z = _solve(o, epoch[use], mag[use], w_all[use], ids.size, n_epochs)
        resid_all = np.full(mag.size, np.nan)
        resid_all[use] = mag[use] - m_i[o] - z[epoch[use]]
        pull = resid_all * np.sqrt(w_all)
        chi2 = (np.bincount(o, weights=pull[use] ** 2, minlength=ids.size)
                / np.maximum(np.bincount(o, minlength=ids.size) - 1, 1))
        variable = np.zeros(n_obj, bool)
        variable[ids[chi2 > cfg.max_anchor_chi2 * max(np.median(chi2), 1.0)]] = True
        new_use = use & ~variable[obj] & ~(np.abs(pull) > cfg.clip)
        if np.array_equal(new_use, use):
            break
        use = new_use
    resid = np.where(use, mag - z[epoch], np.nan)
    if use.any():
        ids, o = np.unique(obj[use], return_inverse=True)
        m_i = (np.bincount(o, weights=w_all[use] * resid[use], minlength=ids.size)
               / np.bincount(o, weights=w_all[use], minlength=ids.size))
        resid[use] -= m_i[o]
    ncalib = np.bincount(epoch[use], minlength=n_epochs)
    wsum = np.bincount(epoch[use], weights=w_all[use], minlength=n_epochs)
    zp_err = np.where(wsum > 0, 1.0 / np.sqrt(np.maximum(wsum, 1e-300)), np.nan)
    rms = grouped_robust_std(epoch[use], resid[use], n_epochs)
    med_rms = np.nanmedian(rms) if np.isfinite(rms).any() else np.nan
    bad = (ncalib < cfg.min_calibrators) | (rms > cfg.bad_rms_factor * med_rms)
    # The model's z_j is the epoch's offset; the correction to add is its opposite.
    zp = np.where(ncalib >= cfg.min_calibrators, -z, 0.0)
    # Error model from the anchors: their scatter vs their photometric error, per epoch
    # points; sigma_obs^2 = (a sigma)^2 + s^2 fitted by least squares on squared residuals.
    sys_err, scale = cfg.sys_floor, 1.0
    ok = use & ~bad[epoch]
    if ok.sum() > 20:
        x = magerr[ok] ** 2
        y = resid[ok] ** 2
        a = np.column_stack([x, np.ones_like(x)])
        coef = np.linalg.lstsq(a, y, rcond=None)[0]
        scale = float(np.sqrt(max(coef[0], 0.25)))
        sys_err = float(np.sqrt(max(coef[1], 0.0)))
    anchors = np.unique(obj[use])
    return Refinement(zp, zp_err, ncalib, rms, bad, anchors, sys_err, scale)
