"""Object identifiers of light curves (the ZTF data-release ``oid``)."""

from __future__ import annotations

import numpy as np

#: Largest matchid an oid can hold (8 decimal digits).
MAX_MATCHID = 99_999_999


def oid(field: int, fid: int, ccdid: int, qid: int, matchid: np.ndarray | int) -> np.ndarray:
    """ZTF DR object id: ``field*1e12 + fid*1e11 + ccdid*1e9 + qid*1e8 + matchid``.

    This is the layout of the public DR ids (``686103400067717`` = field 686, g, CCD 03,
    quadrant 4, matchid 67717; the DR5 parquet in ``tests/data/matchfiles`` decodes the
    same way): one id per field, quadrant and filter, 15 digits for fields < 1000.
    """
    m = np.asarray(matchid, dtype=np.int64)
    if np.any(m < 0) or np.any(m > MAX_MATCHID):
        raise ValueError(f"matchid out of range [0, {MAX_MATCHID}]")
    return (np.int64(field) * 10**12 + np.int64(fid) * 10**11 + np.int64(ccdid) * 10**9
            + np.int64(qid) * 10**8 + m)


def parse_oid(value: int) -> tuple[int, int, int, int, int]:
    """Inverse of :func:`oid`: ``(field, fid, ccdid, qid, matchid)``."""
    v = int(value)
    return (v // 10**12, (v // 10**11) % 10, (v // 10**9) % 100, (v // 10**8) % 10,
            v % 10**8)
