"""Reader of ADES optical astrometry, PSV and XML (the MPC's Astrometry Data Exchange Standard).

:func:`read_ades` returns the frame :func:`zsds.moving.mpc80.read_mpc80` returns (the same
columns, so :func:`zsds.moving.orbitdet.determine_orbit` and :func:`zsds.moving.orbitfit.
fit_orbit` take either), plus the ADES uncertainties ``rmsRA`` (arcsec, includes cos Dec),
``rmsDec`` and ``rmsCorr``, which become the observations' weights.

* **PSV**: ``#``/``!`` header lines (skipped), then a column-name row and ``|``-separated
  records; a new header block may start a new table with its own column row.
* **XML**: every ``optical`` element, wherever it is (``ades/obsBlock/obsData/optical``).
* Identifications: ``permID`` (the designation when present), ``provID``, ``trkSub``.
* ``mode`` becomes the 80-column observation type (``CCD`` -> ``C``, ``CMO`` -> ``B``,
  ``PHO`` -> ``P``, ``VID`` -> ``n``, ``ENC`` -> ``e``, ``MIC`` -> ``M``, ``MER`` -> ``T``,
  ``OCC`` -> ``E``, ``TDI`` -> ``C``); ``astCat`` names become their 80-column codes where
  there is one (``Gaia3`` -> ``W``).
* Observer positions: ``sys`` ``ICRF_KM``/``ICRF_AU`` with ``ctr`` 399 (geocentric, space-based
  observers) give ``obs_x, obs_y, obs_z`` in km; ``sys`` ``WGS84`` (roving) gives ``obs_lon``,
  ``obs_lat`` (deg) and ``obs_alt`` (m) from ``pos1..3``.
* Records with ``deprecated`` set (``X``, ``x``) are marked ``obs_type`` ``X``.
"""

from __future__ import annotations

import os
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import erfa
import numpy as np
import pandas as pd
from astropy.time import Time

from zsds.moving.mpc80 import MPC80_COLUMNS
from zsds.moving.report import ASTCAT_CODES
from zsds.solar.orbits import AU_KM

__all__ = ["ADES_COLUMNS", "AdesError", "parse_ades_psv", "parse_ades_xml", "read_ades"]

#: Columns of :func:`read_ades` frames: those of ``read_mpc80`` plus the ADES uncertainties.
ADES_COLUMNS = (*MPC80_COLUMNS, "rmsRA", "rmsDec", "rmsCorr")

_MODES = {"CCD": "C", "CMO": "B", "PHO": "P", "VID": "n", "ENC": "e", "MIC": "M",
          "MER": "T", "OCC": "E", "TDI": "C", "PMT": "C", "UNK": "C"}
_CAT_CODE = {name: code for code, name in ASTCAT_CODES.items()}


class AdesError(ValueError):
    """An ADES file that cannot be read (the message names the line or element)."""


def _records_to_frame(records: list[dict[str, str]], source: str) -> pd.DataFrame:
    n = len(records)
    get = lambda key: [r.get(key, "").strip() for r in records]  # noqa: E731

    def num(key: str) -> np.ndarray:
        return pd.to_numeric(pd.Series(get(key), dtype=object).replace("", np.nan),
                             errors="coerce").to_numpy(dtype=float)

    times = get("obsTime")
    if n and any(not t for t in times):
        raise AdesError(f"{source}: a record has no obsTime")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", erfa.ErfaWarning)  # UTC before 1960 is "dubious"
            mjd = (np.asarray(Time([t.rstrip("Z") for t in times], format="isot",
                                   scale="utc").mjd, dtype=float) if n else np.zeros(0))
    except ValueError as exc:
        raise AdesError(f"{source}: bad obsTime ({exc})") from exc
    perm, prov, trk = get("permID"), get("provID"), get("trkSub")
    designation = [p or q or None for p, q in zip(perm, prov, strict=True)]
    mode = get("mode")
    obs_type = [_MODES.get(m.upper(), "C") for m in mode]
    for i, r in enumerate(records):
        if r.get("deprecated", "").strip():
            obs_type[i] = "X"
    sys_ = [s.upper() for s in get("sys")]
    pos = np.stack([num("pos1"), num("pos2"), num("pos3")], axis=1) if n else np.zeros((0, 3))
    geo = np.full((n, 3), np.nan)
    site = np.full((n, 3), np.nan)
    for i, s in enumerate(sys_):
        if s in ("ICRF_KM", "ICRF_AU"):
            geo[i] = pos[i] * (AU_KM if s == "ICRF_AU" else 1.0)
        elif s == "WGS84":
            site[i] = pos[i]
    ra, dec = num("ra"), num("dec")
    if n and (np.any(~np.isfinite(ra)) or np.any(~np.isfinite(dec))):
        raise AdesError(f"{source}: a record has no ra/dec")
    out = pd.DataFrame({
        "designation": pd.Series(designation, dtype=object),
        "trksub": pd.Series([t or None for t in trk], dtype=object),
        "discovery": np.array([d == "*" for d in get("disc")], dtype=bool),
        "note1": get("notes"),
        "obs_type": obs_type,
        "mjd": mjd,
        "ra": ra,
        "dec": dec,
        "mag": num("mag"),
        "band": get("band"),
        "astcat": [_CAT_CODE.get(c, c) for c in get("astCat")],
        "stn": get("stn"),
        "obs_x": geo[:, 0], "obs_y": geo[:, 1], "obs_z": geo[:, 2],
        "obs_lon": site[:, 0], "obs_lat": site[:, 1], "obs_alt": site[:, 2],
        "line": np.arange(n),
        "rmsRA": num("rmsRA"),
        "rmsDec": num("rmsDec"),
        "rmsCorr": num("rmsCorr"),
    })  # fmt: skip
    out.attrs["source"] = source
    return out[list(ADES_COLUMNS)]


def parse_ades_psv(text: str, source: str = "<psv>") -> pd.DataFrame:
    """Parse ADES PSV text (see the module docstring).

    Parameters
    ----------
    text : str
        The PSV document.
    source : str, optional
        Name used in error messages.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`ADES_COLUMNS`, one row per record; ``line`` is the 1-based line
        number of the record.
    """
    records: list[dict[str, str]] = []
    lines_of: list[int] = []
    header: list[str] | None = None
    for no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith(("#", "!")):
            if line.startswith("#"):
                header = None  # a new header block: its column row follows
            continue
        fields = [f.strip() for f in line.split("|")]
        if header is None:
            header = fields
            continue
        if len(fields) != len(header):
            raise AdesError(f"{source}: line {no}: {len(fields)} fields, the column row has "
                            f"{len(header)}: {raw!r}")
        records.append(dict(zip(header, fields, strict=True)))
        lines_of.append(no)
    out = _records_to_frame(records, source)
    out["line"] = np.asarray(lines_of, dtype=np.int64)
    return out


def parse_ades_xml(text: str | bytes, source: str = "<xml>") -> pd.DataFrame:
    """Parse ADES XML (every ``optical`` element); returns the frame of :func:`parse_ades_psv`
    with ``line`` the record's position (0-based)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise AdesError(f"{source}: not XML ({exc})") from exc
    records = []
    for opt in root.iter("optical"):
        records.append({child.tag: (child.text or "") for child in opt})
    return _records_to_frame(records, source)


def read_ades(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read an ADES file, PSV or XML (recognised by its first non-blank character).

    Parameters
    ----------
    path : path-like
        The file.

    Returns
    -------
    pandas.DataFrame
        See :func:`parse_ades_psv`.
    """
    text = Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith("<"):
        return parse_ades_xml(text.encode("utf-8"), str(path))
    return parse_ades_psv(text, str(path))
