"""Per-amplifier non-linearity of the ZTF camera: ``DNtrue = x / (A x^2 + B x + 1)``.

The coefficient tables are package data (``zsds/data/instrument/linearity_coeffs_*.txt``, see its
README.md for provenance); one is chosen by the exposure date. The split (pipeline 2) applies
:func:`linearize` to the overscan-subtracted quadrant, as IPAC's instrphotcal does before the bias
subtraction; the simulator applies the exact inverse, :func:`delinearize`, so that the round trip
is the identity.

Tables are keyed by ``(CCD_ID, AMP_ID)``, the keywords of the raw image extension. ``AMP_ID`` is
the readout quadrant minus one (``qid = AMP_ID + 1``), the mapping ztfimg uses
(``ztfimg.io.get_nonlinearity_table``: "qid in the file is actually AMP_ID that starts at 0") and
that the one real IPAC science header at hand confirms (CCD 13 q3: ``AMP_ID = 2``, ``AMP_NAME =
'F'``, the tables' ``f 2`` rows).
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np

from zsds.core.instrument import check_ccd_quad

#: Table names (``linearity_coeffs_<name>.txt``) and the first UT date each applies to. The dates
#: are ztfimg's (``get_nonlinearity_table``); the first table also covers earlier data.
TABLES: tuple[tuple[str, dt.date], ...] = (
    ("201803", dt.date(2000, 1, 1)),
    ("201910", dt.date(2019, 10, 23)),
    ("202004", dt.date(2020, 4, 28)),
)


@dataclass(frozen=True)
class NonLinearityTable:
    """One coefficient table.

    Attributes
    ----------
    name : str
        ``201803``, ``201910`` or ``202004``.
    valid_from : datetime.date
        First UT date it applies to.
    valid_to : datetime.date or None
        First UT date it no longer applies to (None for the latest table).
    coeffs : dict[tuple[int, int], tuple[float, float]]
        ``(A, B)`` by ``(ccdid, amp_id)``.
    """

    name: str
    valid_from: dt.date
    valid_to: dt.date | None
    coeffs: dict[tuple[int, int], tuple[float, float]]

    def coefficients(self, ccdid: int, amp_id: int) -> tuple[float, float]:
        """``(A, B)`` of one amplifier.

        Parameters
        ----------
        ccdid : int
            CCD 1-16.
        amp_id : int
            Amplifier 0-3 (``AMP_ID``; the readout quadrant is ``amp_id + 1``).

        Returns
        -------
        tuple of float
        """
        check_ccd_quad(ccdid, int(amp_id) + 1)
        return self.coeffs[(int(ccdid), int(amp_id))]


def _parse(text: str, name: str) -> dict[tuple[int, int], tuple[float, float]]:
    coeffs = {}
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split()
        if not parts:
            continue
        if len(parts) != 5:
            raise ValueError(f"linearity_coeffs_{name}.txt: cannot parse line {line!r}")
        ccdid, amp_id = int(parts[0]), int(parts[2])
        coeffs[(ccdid, amp_id)] = (float(parts[3]), float(parts[4]))
    if len(coeffs) != 64:
        raise ValueError(f"linearity_coeffs_{name}.txt: {len(coeffs)} amplifiers, expected 64")
    return coeffs


@functools.cache
def load_table(name: str) -> NonLinearityTable:
    """Load one shipped table by name (``201803``, ``201910``, ``202004``).

    Parameters
    ----------
    name : str

    Returns
    -------
    NonLinearityTable
    """
    names = [n for n, _ in TABLES]
    if name not in names:
        raise ValueError(f"unknown non-linearity table {name!r}; known: {', '.join(names)}")
    i = names.index(name)
    res = resources.files("zsds") / "data" / "instrument" / f"linearity_coeffs_{name}.txt"
    valid_to = TABLES[i + 1][1] if i + 1 < len(TABLES) else None
    return NonLinearityTable(name, TABLES[i][1], valid_to, _parse(res.read_text(), name))


def table_for(date: dt.date | dt.datetime) -> NonLinearityTable:
    """The table that applies to an exposure taken on ``date`` (UT).

    Parameters
    ----------
    date : datetime.date or datetime.datetime

    Returns
    -------
    NonLinearityTable
    """
    day = date.date() if isinstance(date, dt.datetime) else date
    name = TABLES[0][0]
    for n, start in TABLES:
        if day >= start:
            name = n
    return load_table(name)


def table_for_jd(jd: float) -> NonLinearityTable:
    """The table for an exposure starting at Julian date ``jd`` (UTC)."""
    day = dt.date(1858, 11, 17) + dt.timedelta(days=float(jd) - 2400000.5)
    return table_for(day)


def _float64_and_dtype(values: np.ndarray) -> tuple[np.ndarray, np.dtype]:
    """``values`` as float64, to compute in, and the dtype to return: float32 for float32
    input, else float64."""
    values = np.asarray(values)
    dtype = values.dtype if values.dtype == np.float32 else np.dtype(np.float64)
    return values.astype(np.float64), dtype


def linearize(x: np.ndarray, a: float, b: float) -> np.ndarray:
    """Correct measured DN for the non-linearity: ``x / (a x^2 + b x + 1)``.

    Parameters
    ----------
    x : ndarray
        Overscan-subtracted DN.
    a, b : float
        Coefficients of the amplifier.

    Returns
    -------
    ndarray
        Linear DN, float64 (float32 in, float32 out).
    """
    xd, dtype = _float64_and_dtype(x)
    return (xd / (a * xd * xd + b * xd + 1.0)).astype(dtype)


def delinearize(y: np.ndarray, a: float, b: float) -> np.ndarray:
    """Inverse of :func:`linearize`: the measured DN ``x`` that reads as linear DN ``y``.

    Solves ``a y x^2 + (b y - 1) x + y = 0`` for the root that tends to ``y`` as ``a, b -> 0``,
    written as ``2 y / ((1 - b y) + sqrt((1 - b y)^2 - 4 a y^2))`` so that it does not cancel.

    Parameters
    ----------
    y : ndarray
        Linear DN (above the floating bias).
    a, b : float

    Returns
    -------
    ndarray
        Measured DN, float64 (float32 in, float32 out).
    """
    yd, dtype = _float64_and_dtype(y)
    c = 1.0 - b * yd
    disc = c * c - 4.0 * a * yd * yd
    if np.any(disc < 0):
        raise ValueError("non-linearity has no inverse at these levels")
    return (2.0 * yd / (c + np.sqrt(disc))).astype(dtype)
