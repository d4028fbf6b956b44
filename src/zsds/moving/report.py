"""Astrometric reports for the Minor Planet Center: the 80-column format and ADES PSV.

Input observations
------------------
A DataFrame with one row per detection and the columns

=============  ==============================================================================
``mjd``        mid-exposure time, MJD (UTC)
``ra, dec``    ICRS position, degrees
``mag``        magnitude (NaN where unmeasured); optional ``sigma_mag`` (mag)
``band``       one-character band (ZTF ``g``, ``r``, ``i``)
``sigma_ra``   optional, arcsec (RA includes cos dec); ``sigma_dec`` arcsec
``snr``        optional signal-to-noise ratio (written as ADES ``logSNR``)
``seeing``     optional FWHM, arcsec;  ``exptime``: optional exposure time, s
=============  ==============================================================================

and identification: ``designation`` (a known object: a number such as ``433`` or
``"620000"``, or a provisional designation, packed ``"K08Aa0A"`` or unpacked
``"2008 AA360"``; a comet, ``"C/2025 N1"``, ``"P/2019 LD2"``, ``"1P"``, ``"1P/Halley"`` or
packed ``"CK25N010"``; an interstellar object, ``"3I"``, ``"2I/Borisov"``, ``"1I/2017 U1"``)
**or** ``trksub`` (a temporary designation for a new track, at most 7 letters and digits,
e.g. ``"zt00001"``). Where a row has both, ``designation`` wins. A numbered comet or
interstellar object is reported by its number alone (what follows the slash, a name or the
provisional designation, is not reported), as in the MPC's records of 3I (``0003I``); comet
provisional designations may have the orbit types ``C P D X A`` and a fragment letter
(``C/2025 N1-A``).

ADES identification: ``permID`` ``433``, ``1P``, ``3I``; ``provID`` ``2024 AB``,
``C/2025 N1``; ``trkSub``.

80-column layout (1-based columns)
----------------------------------
1-5 packed number; 6-12 packed provisional designation or left-justified temporary
designation (comets and interstellar objects: 1-4 number, 5 orbit type ``C P D X A I``,
6-12 packed provisional designation: ``0001P``, ``0003I``, ``    CK25N010``); 13 discovery
``*`` (the same observation as ADES ``disc``, comets included); 14 note 1 (blank); 15 ``C``
(CCD); 16-32 ``YYYY MM DD.dddddd``
(UTC, 1e-6 day); 33-44 RA ``HH MM SS.sss``; 45-56 Dec ``sDD MM SS.ss``; 57-65 blank;
66-70 magnitude ``%5.2f``; 71 band; 72 astrometric catalogue code; 73-77 blank; 78-80
observatory code. Fields are rounded (never truncated) with the carries handled, so
``23 59 59.9996`` becomes ``00 00 00.000`` and a date one half-microday before midnight
moves to the next day (month, year).

Astrometric catalogue
---------------------
The default catalogue code is ``W`` (Gaia DR3; ADES ``Gaia3``): the reference catalogue of
this package (``zsds.sky.refcat``) is Gaia-DR3-like. Pass ``astcat="V"`` (Gaia DR2, ``Gaia2``)
to report against DR2. The 80-column letter and the ADES name always come from the same table.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mpc_designation
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from zsds.moving.mpc80 import MPC80_COLUMNS, Mpc80Error, parse_mpc80, read_mpc80

__all__ = [
    "ASTCAT_CODES",
    "MPC80_COLUMNS",
    "Mpc80Error",
    "format_ades_psv",
    "format_mpc80",
    "mpc80_header",
    "parse_mpc80",
    "read_mpc80",
    "validate_ades",
    "write_ades_psv",
    "write_mpc80",
]

#: 80-column astrometric catalogue code -> ADES ``astCat`` name (MPC table).
ASTCAT_CODES: dict[str, str] = {
    "U": "Gaia1",
    "V": "Gaia2",
    "W": "Gaia3",
    "X": "Gaia3E",
    "Y": "UCAC5",
    "q": "UCAC4",
    "L": "2MASS",
    "S": "URAT1",
    "Z": "ATLAS2",
    "1": "PS1_DR1",
    "2": "PS1_DR2",
}
_ASTCAT_LONG = {"U": "Gaia DR1", "V": "Gaia DR2", "W": "Gaia DR3", "X": "Gaia EDR3"}

_MICRODAY = 1_000_000
_MS_PER_DAY = 86_400_000

# Numbered periodic/defunct comet or interstellar object, packed or not, with an optional
# name or provisional designation after the slash (not reported): 1P, 0001P, 1P/Halley, 3I,
# 1I/2017 U1.  Numbered fragments (73P-B) are not reported.
_NUMBERED_COMET = re.compile(r"(\d{1,4})([PDI])(?:/\S.*)?")
# Comet provisional designations that ADES ``provID`` takes (no I/: interstellar objects are
# numbered when announced), with an optional fragment letter.
_COMET_PROVISIONAL = re.compile(r"[ACDPX]/\d{4} [A-Z]{1,2}\d*(-[A-Z])?")


# --------------------------------------------------------------------------------------------
# Calendar and sexagesimal helpers (integer arithmetic, so rounding carries are exact)
# --------------------------------------------------------------------------------------------


def _mjd_day_to_ymd(day: NDArray[np.int64]) -> tuple[NDArray, NDArray, NDArray]:
    """Gregorian (year, month, day) of integer MJDs (Richards' algorithm)."""
    a = day + 2_400_001 + 32_044  # JDN + 32044
    b = (4 * a + 3) // 146_097
    c = a - 146_097 * b // 4
    d = (4 * c + 3) // 1461
    e = c - 1461 * d // 4
    m = (5 * e + 2) // 153
    dd = e - (153 * m + 2) // 5 + 1
    mm = m + 3 - 12 * (m // 10)
    yy = 100 * b + d - 4800 + m // 10
    return yy, mm, dd


def _zfill(values: NDArray[np.int64], width: int) -> NDArray[np.str_]:
    return np.char.zfill(values.astype(str), width)


def _join(*parts: Any) -> NDArray[np.str_]:
    out = np.asarray(parts[0])
    for p in parts[1:]:
        out = np.char.add(out, p)
    return out


def _format_date(mjd: NDArray[np.float64]) -> NDArray[np.str_]:
    """``YYYY MM DD.dddddd`` (rounded to 1e-6 day, carrying into the next day)."""
    n = np.round(mjd * _MICRODAY).astype(np.int64)
    day, frac = np.divmod(n, _MICRODAY)
    y, m, d = _mjd_day_to_ymd(day)
    return _join(_zfill(y, 4), " ", _zfill(m, 2), " ", _zfill(d, 2), ".", _zfill(frac, 6))


def _format_ra(ra: NDArray[np.float64]) -> NDArray[np.str_]:
    """``HH MM SS.sss`` (rounded to 1 ms of time, 24h wraps to 0h)."""
    ms = np.round(np.remainder(ra, 360.0) / 15.0 * 3_600_000.0).astype(np.int64) % _MS_PER_DAY
    h, rest = np.divmod(ms, 3_600_000)
    mi, rest = np.divmod(rest, 60_000)
    s, frac = np.divmod(rest, 1000)
    return _join(_zfill(h, 2), " ", _zfill(mi, 2), " ", _zfill(s, 2), ".", _zfill(frac, 3))


def _format_dec(dec: NDArray[np.float64]) -> NDArray[np.str_]:
    """``sDD MM SS.ss`` (rounded to 0.01 arcsec; ``-00 00 00.00`` never occurs)."""
    cas = np.round(np.abs(dec) * 360_000.0).astype(np.int64)
    sign = np.where((dec < 0) & (cas > 0), "-", "+")
    d, rest = np.divmod(cas, 360_000)
    mi, rest = np.divmod(rest, 6000)
    s, frac = np.divmod(rest, 100)
    return _join(sign, _zfill(d, 2), " ", _zfill(mi, 2), " ", _zfill(s, 2), ".", _zfill(frac, 2))


# --------------------------------------------------------------------------------------------
# Identification
# --------------------------------------------------------------------------------------------


def _designation_text(value: Any) -> str:
    """A designation as text; integral numbers (also floats such as 433.0) as digits."""
    if isinstance(value, (int, np.integer)) or (
        isinstance(value, (float, np.floating)) and float(value).is_integer()
    ):
        return str(int(value))
    return str(value).strip()


def _numbered_comet(text: str) -> str | None:
    """``"1P"`` for ``1P``, ``0001P``, ``1P/Halley``, ``1I/2017 U1`` ...; None if not that form."""
    m = _NUMBERED_COMET.fullmatch(text)
    if m is None:
        return None
    number = int(m[1])
    if number == 0:
        raise ValueError(f"comet/interstellar number 0 in {text!r}")
    return f"{number}{m[2]}"


def _classify_designation(text: str) -> tuple[str, str]:
    """Return ``(number, provisional)`` (unpacked; '' where absent) for one designation.

    ``number`` is a minor-planet number (``"433"``) or a periodic-comet/interstellar number
    (``"1P"``, ``"3I"``); ``provisional`` a minor-planet (``"2024 AB"``) or comet
    (``"C/2025 N1"``) provisional designation.
    """
    if text.isdigit():
        number = int(text)
        if not 0 < number <= 15_396_335:
            raise ValueError(f"minor-planet number {number} outside 1-15396335")
        return str(number), ""
    comet = _numbered_comet(text)
    if comet is not None:
        return comet, ""
    try:
        info = mpc_designation.detect_format(text)
    except mpc_designation.MPCDesignationError as err:
        raise ValueError(
            f"{text!r} is not a valid MPC designation; use the 'trksub' column for "
            "temporary designations"
        ) from err
    unpacked = mpc_designation.unpack(text)
    if info["type"] == "permanent":
        return unpacked, ""
    if info["type"] == "provisional":
        return "", unpacked
    if info["type"] == "comet_full":
        comet = _numbered_comet(unpacked)  # a packed "0001PJ82U010" -> 1P
        if comet is not None:
            return comet, ""
        if unpacked.startswith("I/"):
            raise ValueError(f"report interstellar object {text!r} by its number (e.g. '1I')")
        try:
            packed = mpc_designation.pack(unpacked)
        except mpc_designation.MPCDesignationError:
            packed = ""
        if not (_COMET_PROVISIONAL.fullmatch(unpacked) and len(packed) == 8):
            raise ValueError(f"comet designation {text!r} cannot be reported")
        return "", unpacked
    raise ValueError(f"only minor-planet, comet and interstellar designations, not {text!r}")


def _identifiers(obs: pd.DataFrame) -> tuple[NDArray[np.str_], NDArray[np.str_], NDArray[np.str_]]:
    """Per-row (number, provisional designation, trksub), unpacked, '' where absent."""
    n = len(obs)
    number = np.full(n, "", dtype=object)
    prov = np.full(n, "", dtype=object)
    trk = np.full(n, "", dtype=object)
    has_des = np.zeros(n, dtype=bool)
    if "designation" in obs:
        des = obs["designation"]
        has_des = des.notna().to_numpy() & (des.astype(str).str.strip() != "").to_numpy()
        if has_des.any():
            texts = [_designation_text(v) for v in des[has_des].to_numpy(dtype=object)]
            uniq, inverse = np.unique(np.array(texts, dtype=str), return_inverse=True)
            table = [_classify_designation(u) for u in uniq]
            number[has_des] = np.array([t[0] for t in table], dtype=object)[inverse]
            prov[has_des] = np.array([t[1] for t in table], dtype=object)[inverse]
    need = ~has_des
    if need.any():
        if "trksub" not in obs:
            raise ValueError("rows without a designation need a 'trksub' column")
        t = obs["trksub"][need]
        if t.isna().any():
            raise ValueError("every observation needs a designation or a trksub")
        t = t.astype(str).str.strip()
        bad = ~t.str.fullmatch(r"[A-Za-z0-9]{1,7}")
        if bad.any():
            raise ValueError(f"trksub must be 1-7 letters/digits: {t[bad].unique()[:3].tolist()}")
        trk[need] = t.to_numpy(dtype=object)
    return number.astype(str), prov.astype(str), trk.astype(str)


def _object_key(number: NDArray, prov: NDArray, trk: NDArray) -> NDArray[np.str_]:
    return np.where(number != "", "N" + number, np.where(prov != "", "P" + prov, "T" + trk))


def _discovery_mask(obs: pd.DataFrame, key: NDArray) -> NDArray[np.bool_]:
    """True for the earliest observation of each object."""
    mjd = obs["mjd"].to_numpy(dtype=float)
    first = pd.Series(mjd).groupby(key).transform("min").to_numpy()
    mask = mjd == first
    # Only one asterisk per object, even for equal times.
    dup = pd.Series(key).where(mask).duplicated().to_numpy() & mask
    return mask & ~dup


def _astcat_code(astcat: str) -> str:
    if astcat in ASTCAT_CODES:
        return astcat
    inverse = {v: k for k, v in ASTCAT_CODES.items()}
    if astcat in inverse:
        return inverse[astcat]
    raise ValueError(f"unknown astrometric catalogue {astcat!r}; known: {sorted(ASTCAT_CODES)}")


def _column(obs: pd.DataFrame, name: str) -> NDArray[np.float64]:
    if name not in obs:
        return np.full(len(obs), np.nan)
    return pd.to_numeric(obs[name], errors="coerce").to_numpy(dtype=float)


# --------------------------------------------------------------------------------------------
# MPC 80-column format
# --------------------------------------------------------------------------------------------


def _packed_id(number: str, prov: str, trk: str) -> str:
    """Columns 1-12 of an 80-column record (arguments as :func:`_identifiers` gives them).

    Minor planets: 1-5 packed number, 6-12 packed provisional or temporary designation.
    Comets and interstellar objects: 1-4 number, 5 orbit type, 6-12 packed provisional
    designation (``0001P``, ``0003I``, ``    CK25N010``).
    """
    if number and not number.isdigit():  # numbered comet / interstellar object
        return f"{int(number[:-1]):04d}{number[-1]}" + " " * 7
    if prov[1:2] == "/":  # comet provisional: orbit type in column 5
        return " " * 4 + mpc_designation.pack(prov)
    packed_num = mpc_designation.pack(number) if number else ""
    col6 = mpc_designation.pack(prov) if prov else trk
    if len(packed_num) > 5 or len(col6) > 7:
        raise ValueError("designation does not fit the 80-column identification fields")
    return packed_num.ljust(5) + col6.ljust(7)


def format_mpc80(
    obs: pd.DataFrame,
    discovery: bool = False,
    astcat: str = "W",
    obscode: str = "I41",
    note1: str = " ",
) -> list[str]:
    """Format observations as MPC 80-column records.

    Parameters
    ----------
    obs : pandas.DataFrame
        Observations (columns described in the module docstring).
    discovery : bool, optional
        Mark the earliest observation of each object with the discovery asterisk (column 13;
        comets and interstellar objects too: the observation ADES ``disc`` marks).
    astcat : str, optional
        Astrometric catalogue: an 80-column code (``"W"`` Gaia DR3, ``"V"`` Gaia DR2, ...) or
        the ADES name (``"Gaia3"``).
    obscode : str, optional
        Three-character observatory code (columns 78-80).
    note1 : str, optional
        One-character note 1 (column 14).

    Returns
    -------
    list of str
        One 80-character line per observation, in input order.
    """
    if len(obscode) != 3 or len(note1) != 1:
        raise ValueError("obscode must have 3 characters and note1 one")
    n = len(obs)
    if n == 0:
        return []
    number, prov, trk = _identifiers(obs)
    keys = list(zip(number.tolist(), prov.tolist(), trk.tolist(), strict=True))
    packed = {k: _packed_id(*k) for k in set(keys)}
    ident = np.array([packed[k] for k in keys], dtype=str)
    disc = np.full(n, " ")
    if discovery:
        disc[_discovery_mask(obs, _object_key(number, prov, trk))] = "*"
    mjd = obs["mjd"].to_numpy(dtype=float)
    ra = obs["ra"].to_numpy(dtype=float)
    dec = obs["dec"].to_numpy(dtype=float)
    if not (np.all(np.isfinite(mjd)) and np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))):
        raise ValueError("mjd, ra and dec must be finite")
    if np.any(np.abs(dec) > 90.0):
        raise ValueError("|dec| must be <= 90 deg")
    mag = _column(obs, "mag")
    has_mag = np.isfinite(mag)
    mag_txt = np.where(has_mag, np.char.mod("%5.2f", np.where(has_mag, mag, 0.0)), " " * 5)
    if np.any(np.char.str_len(mag_txt) != 5):
        raise ValueError("magnitudes must lie in (-10, 100) to fit columns 66-70")
    band = obs["band"].astype(str).str[:1].to_numpy() if "band" in obs else np.full(n, " ")
    band = np.where(has_mag, band, " ")
    lines = _join(
        ident, disc, note1, "C", _format_date(mjd), _format_ra(ra), _format_dec(dec),
        " " * 9, mag_txt, band, _astcat_code(astcat), " " * 5, obscode,
    )  # fmt: skip
    out = lines.tolist()
    if any(len(s) != 80 for s in out):  # pragma: no cover - guarded by the field checks
        raise AssertionError("an 80-column record has the wrong length")
    return out


def mpc80_header(
    contact: str | Sequence[str] | None = None,
    observers: Sequence[str] | None = None,
    measurers: Sequence[str] | None = None,
    telescope: Mapping[str, Any] | str | None = None,
    astcat: str = "W",
    ack: str | None = None,
    ac2: str | None = None,
    comment: str | Sequence[str] | None = None,
    obscode: str = "I41",
) -> list[str]:
    """Header lines (``COD``, ``CON``, ``OBS``, ``MEA``, ``TEL``, ``NET``, ``ACK``, ``AC2``,
    ``COM``) of an 80-column submission.

    Parameters
    ----------
    contact : str or sequence of str, optional
        Contact name/address lines (``CON``); an e-mail goes in square brackets.
    observers, measurers : sequence of str, optional
        Names (``OBS``, ``MEA``); long lists are wrapped onto several lines.
    telescope : mapping or str, optional
        ``dict(design="Schmidt", aperture=1.2, detector="CCD", fRatio=2.4)`` gives
        ``TEL 1.2-m f/2.4 Schmidt + CCD``; a string is used verbatim. Defaults to ZTF's P48.
    astcat : str, optional
        Catalogue code, written as ``NET`` (e.g. ``Gaia DR3``).
    ack, ac2 : str, optional
        Acknowledgement line and the e-mail address(es) it goes to.
    comment : str or sequence of str, optional
        ``COM`` lines.
    obscode : str, optional
        Observatory code (``COD``).

    Returns
    -------
    list of str
        Lines of at most 80 characters.
    """

    def wrap(keyword: str, items: Sequence[str]) -> list[str]:
        lines: list[str] = []
        cur = ""
        for item in items:
            cand = f"{cur}, {item}" if cur else item
            if cur and len(cand) > 76:
                lines.append(f"{keyword} {cur}")
                cand = item
            cur = cand
        if cur:
            lines.append(f"{keyword} {cur}")
        return lines

    def as_list(x: str | Sequence[str] | None) -> list[str]:
        return [] if x is None else [x] if isinstance(x, str) else list(x)

    if telescope is None:
        telescope = {"design": "Schmidt", "aperture": 1.2, "detector": "CCD", "fRatio": 2.4}
    if isinstance(telescope, str):
        tel = telescope
    else:
        fr = f"f/{telescope['fRatio']:g} " if telescope.get("fRatio") else ""
        tel = f"{float(telescope['aperture']):g}-m {fr}{telescope['design']} + "
        tel += str(telescope["detector"])
    code = _astcat_code(astcat)
    out = [f"COD {obscode}"]
    out += [f"CON {c}" for c in as_list(contact)]
    out += wrap("OBS", as_list(observers))
    out += wrap("MEA", as_list(measurers))
    out += [f"TEL {tel}", f"NET {_ASTCAT_LONG.get(code, ASTCAT_CODES[code])}"]
    out += [f"ACK {a}" for a in as_list(ack)]
    out += [f"AC2 {a}" for a in as_list(ac2)]
    out += [f"COM {c}" for c in as_list(comment)]
    too_long = [s for s in out if len(s) > 80]
    if too_long:
        raise ValueError(f"header line longer than 80 characters: {too_long[0]!r}")
    return out


def write_mpc80(
    path: str | os.PathLike[str],
    obs: pd.DataFrame,
    header: bool = True,
    discovery: bool = False,
    astcat: str = "W",
    obscode: str = "I41",
    **header_kwargs: Any,
) -> None:
    """Write an 80-column submission file (header, then one record per observation).

    Parameters
    ----------
    path : path-like
        Output file (ASCII).
    obs : pandas.DataFrame
        Observations, see :func:`format_mpc80`.
    header : bool, optional
        Write the :func:`mpc80_header` block first.
    discovery, astcat, obscode
        Passed to :func:`format_mpc80` (and the header).
    **header_kwargs
        Passed to :func:`mpc80_header` (``contact``, ``observers``, ``measurers``, ...).
    """
    lines = mpc80_header(astcat=astcat, obscode=obscode, **header_kwargs) if header else []
    lines += format_mpc80(obs, discovery=discovery, astcat=astcat, obscode=obscode)
    Path(path).write_text("\n".join(lines) + "\n", encoding="ascii")


# --------------------------------------------------------------------------------------------
# ADES PSV
# --------------------------------------------------------------------------------------------


def _obs_time_iso(mjd: NDArray[np.float64]) -> NDArray[np.str_]:
    """ISO 8601 UTC with milliseconds and ``Z`` (rounded to 1 ms, carrying into the next day)."""
    n = np.round(mjd * _MS_PER_DAY).astype(np.int64)
    day, ms = np.divmod(n, _MS_PER_DAY)
    y, m, d = _mjd_day_to_ymd(day)
    h, rest = np.divmod(ms, 3_600_000)
    mi, rest = np.divmod(rest, 60_000)
    s, frac = np.divmod(rest, 1000)
    return _join(
        _zfill(y, 4), "-", _zfill(m, 2), "-", _zfill(d, 2), "T", _zfill(h, 2), ":",
        _zfill(mi, 2), ":", _zfill(s, 2), ".", _zfill(frac, 3), "Z",
    )  # fmt: skip


def _fmt_opt(fmt: str, values: NDArray[np.float64], floor: float | None = None) -> NDArray:
    ok = np.isfinite(values)
    v = np.where(ok, values, 0.0)
    if floor is not None:
        v = np.maximum(v, floor)
    return np.where(ok, np.char.mod(fmt, v), "")


def format_ades_psv(
    obs: pd.DataFrame,
    submitter: str = "ZTF Science Data System",
    measurers: Sequence[str] = ("ZTF Science Data System",),
    observers: Sequence[str] | None = None,
    telescope: Mapping[str, Any] | None = None,
    astcat: str = "W",
    obscode: str = "I41",
    discovery: bool = False,
    comment: str | Sequence[str] | None = None,
    version: str = "2022",
) -> str:
    """Format observations as an ADES PSV submission (one ``obsBlock``).

    Parameters
    ----------
    obs : pandas.DataFrame
        Observations (see the module docstring).
    submitter : str, optional
        ``submitter/name``.
    measurers : sequence of str, optional
        ``measurers/name`` (required by the submission schema).
    observers : sequence of str, optional
        ``observers/name``.
    telescope : mapping, optional
        ``telescope`` elements, default ``dict(design="Schmidt", aperture=1.2,
        detector="CCD")``; other schema keys (``fRatio``, ``filter``, ``arraySize``,
        ``pixelScale``, ``name``) are written too.
    astcat : str, optional
        80-column code or ADES name (``"W"`` = ``Gaia3``, ``"V"`` = ``Gaia2``).
    obscode : str, optional
        Station code (``stn`` and ``observatory/mpcCode``).
    discovery : bool, optional
        Set ``disc = *`` on the earliest observation of each object.
    comment : str or sequence of str, optional
        ``comment/line`` entries.
    version : str, optional
        ADES version attribute.

    Returns
    -------
    str
        PSV text. Data columns, in schema order: ``permID``, ``provID``, ``trkSub`` (those
        present), ``mode`` (CCD), ``stn``, ``obsTime`` (ISO UTC, ms, ``Z``), ``ra``, ``dec``
        (decimal deg, 7 decimals), ``rmsRA``, ``rmsDec`` (arcsec), ``astCat``, ``mag``,
        ``rmsMag``, ``band``, ``logSNR``, ``seeing``, ``exp``, ``disc``; optional columns appear
        only when some row has a value.
    """
    if telescope is None:
        telescope = {"design": "Schmidt", "aperture": 1.2, "detector": "CCD"}
    n = len(obs)
    number, prov, trk = _identifiers(obs) if n else (np.array([], str),) * 3
    mjd = obs["mjd"].to_numpy(dtype=float)
    ra = np.remainder(obs["ra"].to_numpy(dtype=float), 360.0)
    dec = obs["dec"].to_numpy(dtype=float)
    ra_txt = np.char.mod("%.7f", ra)
    ra_txt = np.where(ra_txt == "360.0000000", "0.0000000", ra_txt)
    mag = _column(obs, "mag")
    band = obs["band"].astype(str).str[:1].to_numpy() if "band" in obs else np.full(n, "")
    snr = _column(obs, "snr")
    with np.errstate(divide="ignore", invalid="ignore"):
        log_snr = np.where(snr > 0, np.log10(np.where(snr > 0, snr, 1.0)), np.nan)
    disc = np.full(n, "", dtype=object)
    if discovery and n:
        disc[_discovery_mask(obs, _object_key(number, prov, trk))] = "*"
    columns: dict[str, NDArray] = {
        "permID": number,
        "provID": prov,
        "trkSub": trk,
        "mode": np.full(n, "CCD"),
        "stn": np.full(n, obscode),
        "obsTime": _obs_time_iso(mjd),
        "ra": ra_txt,
        "dec": np.char.mod("%+.7f", dec),
        "rmsRA": _fmt_opt("%.3f", _column(obs, "sigma_ra"), floor=0.001),
        "rmsDec": _fmt_opt("%.3f", _column(obs, "sigma_dec"), floor=0.001),
        "astCat": np.full(n, ASTCAT_CODES[_astcat_code(astcat)]),
        "mag": _fmt_opt("%.2f", mag),
        "rmsMag": _fmt_opt("%.2f", np.where(np.isfinite(mag), _column(obs, "sigma_mag"), np.nan),
                           floor=0.01),
        "band": np.where(np.isfinite(mag), band, ""),
        "logSNR": _fmt_opt("%.2f", log_snr),
        "seeing": _fmt_opt("%.2f", _column(obs, "seeing"), floor=0.01),
        "exp": _fmt_opt("%.1f", _column(obs, "exptime"), floor=0.1),
        "disc": disc.astype(str),
    }  # fmt: skip
    always = {"mode", "stn", "obsTime", "ra", "dec", "astCat"}
    keep = [k for k, v in columns.items() if k in always or np.any(np.asarray(v) != "")]

    def section(name: str, items: Sequence[tuple[str, Any]]) -> list[str]:
        return [f"# {name}"] + [f"! {k} {v}" for k, v in items]

    head = [f"# version={version}"]
    head += section("observatory", [("mpcCode", obscode)])
    head += section("submitter", [("name", submitter)])
    if observers:
        head += section("observers", [("name", x) for x in observers])
    head += section("measurers", [("name", x) for x in measurers])
    order = ("name", "design", "aperture", "detector", "fRatio", "filter", "arraySize",
             "pixelScale")  # fmt: skip
    tel_items = [(k, telescope[k]) for k in order if k in telescope]
    head += section("telescope", [(k, f"{v:g}" if isinstance(v, float) else v)
                                  for k, v in tel_items])  # fmt: skip
    if comment is not None:
        lines = [comment] if isinstance(comment, str) else list(comment)
        head += section("comment", [("line", c) for c in lines])

    # Pad every column to a common width so the file reads as a table.
    cells = [np.asarray(columns[k], dtype=str) for k in keep]
    widths = [
        max(len(k), int(np.max(np.char.str_len(c))) if n else 0)
        for k, c in zip(keep, cells, strict=True)
    ]
    header_row = "|".join(k.ljust(w) for k, w in zip(keep, widths, strict=True))
    body = [np.char.ljust(c, w) for c, w in zip(cells, widths, strict=True)]
    rows: list[str] = []
    if n:
        joined = body[0]
        for c in body[1:]:
            joined = np.char.add(np.char.add(joined, "|"), c)
        rows = joined.tolist()
    return "\n".join([*head, header_row, *rows]) + "\n"


def write_ades_psv(path: str | os.PathLike[str], obs: pd.DataFrame, **kwargs: Any) -> None:
    """Write :func:`format_ades_psv` output to ``path`` (UTF-8); ``kwargs`` are passed on."""
    Path(path).write_text(format_ades_psv(obs, **kwargs), encoding="utf-8")


# --------------------------------------------------------------------------------------------
# ADES validation with the iau-ades package
# --------------------------------------------------------------------------------------------

_ADES_LOCK = threading.Lock()
_SUBMIT_SCHEMA: list[Any] = []


def _submit_schema() -> Any:
    """The ADES submit schema, built once from ``adesmaster.xml`` with the package's XSLT."""
    if not _SUBMIT_SCHEMA:
        from ades import adesutility

        master = adesutility.readXML(adesutility.adesmaster)
        xslt = adesutility.readXML(adesutility.schemaxslts["submit"])
        _SUBMIT_SCHEMA.append(adesutility.XMLtoSchemaViaXSLT(master, xslt))
    return _SUBMIT_SCHEMA[0]


def _psv_text(psv: str | os.PathLike[str]) -> str:
    if isinstance(psv, str) and ("\n" in psv or psv.lstrip().startswith("#")):
        return psv
    return Path(psv).read_text(encoding="utf-8")


def _validate_in_process(text: str) -> tuple[bool, str]:
    from ades import psvtoxml

    # psvtoxml is a module-level state machine: reset it and serialise access.
    with _ADES_LOCK:
        psvtoxml.state = psvtoxml.EMPTY_STATE
        psvtoxml.firstLine = True
        psvtoxml.headerType = None
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                for line in text.splitlines():
                    psvtoxml.parsePSV(line)
                tree = psvtoxml.stack.takeTreeAndClear()
        except (RuntimeError, KeyError, IndexError, AttributeError, SystemExit) as err:
            return False, f"PSV to XML conversion failed: {err}\n{out.getvalue()}".strip()
        finally:
            psvtoxml.state = psvtoxml.EMPTY_STATE
            psvtoxml.firstLine = True
    schema = _submit_schema()
    ok = bool(schema.validate(tree))
    messages = "submit is OK" if ok else "submit has failed:\n" + str(schema.error_log)
    return ok, messages


def _validate_subprocess(text: str) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory() as tmp:
        psv, xml = Path(tmp) / "obs.psv", Path(tmp) / "obs.xml"
        psv.write_text(text, encoding="utf-8")
        conv = subprocess.run(
            [sys.executable, "-m", "ades.psvtoxml", str(psv), str(xml)],
            cwd=tmp, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if conv.returncode != 0 or not xml.exists():
            return False, f"PSV to XML conversion failed: {conv.stdout}{conv.stderr}".strip()
        val = subprocess.run(
            [sys.executable, "-m", "ades.valsubmit", str(xml)],
            cwd=tmp, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        report = Path(tmp) / "valsubmit.file"
        messages = (report.read_text() if report.exists() else "") + val.stdout + val.stderr
    ok = val.returncode == 0 and "submit is OK" in messages and "has failed" not in messages
    return ok, messages.strip()


def validate_ades(psv: str | os.PathLike[str], in_process: bool = True) -> tuple[bool, str]:
    """Validate an ADES PSV submission against the MPC submit schema (``iau-ades`` package).

    The PSV is converted to XML with ``ades.psvtoxml`` and checked against the schema that
    ``ades.valsubmit`` builds from ``adesmaster.xml``. In-process by default (the converter's
    module state is reset and guarded by a lock); ``in_process=False`` runs
    ``python -m ades.psvtoxml`` and ``python -m ades.valsubmit`` in a temporary directory.

    Parameters
    ----------
    psv : str or path-like
        PSV text (anything containing a newline or starting with ``#``) or a file path.
    in_process : bool, optional
        Use the package's functions in this interpreter rather than subprocesses.

    Returns
    -------
    ok : bool
        True when the file converts and validates.
    messages : str
        ``"submit is OK"`` or the conversion/validation errors.
    """
    text = _psv_text(psv)
    if in_process:
        return _validate_in_process(text)
    return _validate_subprocess(text)
