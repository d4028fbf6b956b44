"""Source matching: epochal PSF-fit detections to the reference catalogue of their quadrant.

Every detection of every epoch is matched to the nearest reference-catalogue source within
``radius`` (1.5", as IPAC); a reference source takes at most one detection per epoch (the
nearest). The detections left over are grouped by friends-of-friends within the same radius
over all epochs: each group of >= 2 is a *transient* (an object absent from the reference),
named after the previous build's transient at its position (so a rebuild gives the same ids),
else given a new id. Positions are compared as 3-D unit vectors in a k-d tree
(``scipy.spatial.cKDTree``), which is exact on the sphere and has no RA wrap or pole problem.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from zsds.core.sphere import chord_length, unit_vectors
from zsds.lightcurves.model import TRANSIENT_MATCHID0


@dataclass(frozen=True)
class MatchConfig:
    """Options of :func:`match_detections`.

    Single detections of noise, cosmic rays and asteroids are not worth a light curve, hence
    ``min_transient_points``. Detections not in the reference make transients only if point
    sources: detections along bleed trails and bad columns fit the PSF badly.
    """

    radius: float = 1.5  #: match radius (arcsec); IPAC used 1.5
    min_transient_points: int = 2  #: fewest detections of a new transient
    transient_min_snr: float = 5.0  #: least S/N of a detection making a transient
    transient_max_chi: float = 3.0  #: most PSF-fit reduced chi2 (or S/N / 50 if larger) of one


@dataclass
class MatchResult:
    """Object of every detection."""

    matchid: np.ndarray  #: per detection: reference sourceid, transient matchid, or -1 (dropped)
    is_source: np.ndarray  #: per detection: matched to the reference catalogue
    transient_ids: np.ndarray  #: matchids of the transients (earlier ones detected, and new)
    transient_ra: np.ndarray  #: their mean RA (deg)
    transient_dec: np.ndarray  #: their mean Dec (deg)


def _one_per_epoch(idx: np.ndarray, dist: np.ndarray, epoch: np.ndarray) -> np.ndarray:
    """Keep, for each (target, epoch), only the nearest detection; the others get -1."""
    out = idx.copy()
    ok = np.flatnonzero(idx >= 0)
    if ok.size == 0:
        return out
    order = ok[np.lexsort((dist[ok], epoch[ok], idx[ok]))]
    key_t, key_e = idx[order], epoch[order]
    first = np.ones(order.size, bool)
    first[1:] = (key_t[1:] != key_t[:-1]) | (key_e[1:] != key_e[:-1])
    out[order[~first]] = -1
    return out


def match_detections(
    ra: np.ndarray,
    dec: np.ndarray,
    epoch: np.ndarray,
    ref_ids: np.ndarray,
    ref_ra: np.ndarray,
    ref_dec: np.ndarray,
    prior_ids: np.ndarray | None = None,
    prior_ra: np.ndarray | None = None,
    prior_dec: np.ndarray | None = None,
    config: MatchConfig | None = None,
    transient_ok: np.ndarray | None = None,
) -> MatchResult:
    """Assign every detection to a reference source, a known transient or a new transient.

    Parameters
    ----------
    ra, dec : numpy.ndarray
        Detections of all epochs (deg).
    epoch : numpy.ndarray
        Integer epoch index of each detection (one detection per object per epoch).
    ref_ids, ref_ra, ref_dec : numpy.ndarray
        Reference catalogue (``sourceid`` and position).
    prior_ids, prior_ra, prior_dec : numpy.ndarray, optional
        Transients of an earlier build, whose matchids are kept.
    config : MatchConfig, optional
    transient_ok : numpy.ndarray, optional
        Per detection: may it belong to a transient (default all). Detections that are not
        clean point sources (bleed trails, bad columns, cosmic-ray residue) are left out, so
        they cannot make spurious transients out of detector features.

    Returns
    -------
    MatchResult
    """
    cfg = config or MatchConfig()
    ra, dec = np.asarray(ra, float), np.asarray(dec, float)
    n = len(ra)
    chord = chord_length(cfg.radius)
    xyz = unit_vectors(ra, dec)
    epoch = np.asarray(epoch, np.int64)
    matchid = np.full(n, -1, np.int64)
    is_source = np.zeros(n, bool)
    if n == 0:
        e = np.zeros(0)
        return MatchResult(matchid, is_source, e.astype(np.int64), e, e)

    if len(ref_ids):
        dist, idx = cKDTree(unit_vectors(ref_ra, ref_dec)).query(
            xyz, distance_upper_bound=chord)
        idx = np.where(np.isfinite(dist), idx, -1)
        idx = _one_per_epoch(idx, dist, epoch)
        hit = idx >= 0
        matchid[hit] = np.asarray(ref_ids, np.int64)[idx[hit]]
        is_source[hit] = True

    rest = np.flatnonzero(matchid < 0)
    if transient_ok is not None:
        rest = rest[np.asarray(transient_ok, bool)[rest]]
    prior_ids = np.zeros(0, np.int64) if prior_ids is None else np.asarray(prior_ids, np.int64)
    next_id = max(int(prior_ids.max()) + 1 if prior_ids.size else 0, TRANSIENT_MATCHID0)
    if rest.size:
        # Friends-of-friends among the leftovers: connected components of the pair graph.
        # All epochs are grouped every time, so the same detections give the same groups;
        # the groups are then named after the previous build's transients (idempotent ids).
        pairs = cKDTree(xyz[rest]).query_pairs(chord, output_type="ndarray")
        graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])),
                           shape=(rest.size, rest.size)) if len(pairs) else \
            coo_matrix((rest.size, rest.size))
        ncomp, label = connected_components(graph, directed=False)
        size = np.bincount(label, minlength=ncomp)
        kept = np.flatnonzero(size >= cfg.min_transient_points)
        new_id = np.full(ncomp, -1, np.int64)
        if kept.size:
            centre = np.stack([np.bincount(label, weights=xyz[rest, k], minlength=ncomp)
                               for k in range(3)], axis=1)[kept]
            centre /= np.linalg.norm(centre, axis=1, keepdims=True)
            named = np.zeros(kept.size, bool)
            if prior_ids.size:
                # One-to-one, nearest pairs first: group centre to previous transient.
                dist, idx = cKDTree(unit_vectors(prior_ra, prior_dec)).query(
                    centre, distance_upper_bound=chord)
                taken: set[int] = set()
                for g in np.argsort(dist):
                    if not np.isfinite(dist[g]) or int(idx[g]) in taken:
                        continue
                    taken.add(int(idx[g]))
                    new_id[kept[g]] = prior_ids[idx[g]]
                    named[g] = True
            # New ids in order of first appearance (epoch, then position): deterministic.
            rank = np.empty(rest.size, np.int64)
            rank[np.lexsort((dec[rest], ra[rest], epoch[rest]))] = np.arange(rest.size)
            first = np.full(ncomp, np.iinfo(np.int64).max)
            np.minimum.at(first, label, rank)
            fresh = kept[~named]
            new_id[fresh[np.argsort(first[fresh], kind="stable")]] = \
                next_id + np.arange(fresh.size)
        matchid[rest] = new_id[label]

    tmask = (matchid >= TRANSIENT_MATCHID0)
    tids, inv = np.unique(matchid[tmask], return_inverse=True)
    # Mean position through the mean unit vector (no wrap problem at RA 0/360).
    v = np.zeros((tids.size, 3))
    for k in range(3):
        v[:, k] = np.bincount(inv, weights=xyz[tmask, k], minlength=tids.size)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    t_ra = np.rad2deg(np.arctan2(v[:, 1], v[:, 0])) % 360.0
    t_dec = np.rad2deg(np.arcsin(np.clip(v[:, 2], -1, 1)))
    return MatchResult(matchid, is_source, tids, t_ra, t_dec)
