"""Reader of MPC 80-column optical astrometry: every record type of a real MPC file.

Layout (1-based columns; MPC "Format for optical astrometric observations", "Satellite
observations" and "Roving observers" pages, and the MPC's ADES-Master ``mpc80coltoxml``):

=========  ===================================================================================
1-12       identification.  Minor planets: 1-5 packed number (``00433``, ``A0000``,
           ``~0000``), 6-12 packed provisional designation (``J98Q55S``) or a temporary
           designation (``zt00001``).  Comets and interstellar objects: 1-4 number, 5 orbit
           type (``P C D X A I``), 6-12 packed provisional designation (``0003I``,
           ``    CK25N010`` = C/2025 N1).  Natural satellites: 1 planet (``J S U N``), 2-4
           number, 5 ``S`` (``J013S`` = Jupiter XIII), or ``    SK19S010`` (S/2019 S 1)
13         discovery asterisk (minor planets)
14         note 1 (program code or note)
15         note 2 = observation type: ``C`` CCD, ``B`` CMOS, blank/``P`` photographic,
           ``A`` (reduced from B1950), ``c e E H M n N O T V X x``; ``S``/``s`` space-based
           (two lines), ``V``/``v`` roving (two lines), ``R``/``r`` radar (two lines)
16-32      UTC date ``YYYY MM DD.dddddd`` (column 20 may hold ``a``-``e``: asteroid satellites)
33-44      RA: ``HH MM SS.sss`` or reduced precision ``HH MM SS.s``, ``HH MM SS``, ``HH MM.mm``,
           ``HH MM.m``, ``HH MM``
45-56      Dec: ``sDD MM SS.ss`` or reduced precision ``sDD MM SS.s``, ``sDD MM SS``,
           ``sDD MM.m``, ``sDD MM``
66-70      magnitude; 71 band; 72 astrometric catalogue; 78-80 observatory code
=========  ===================================================================================

Second lines follow their first line (same columns 1-32 and station):

* ``s`` (space-based): column 33 ``1`` (km) or ``2`` (au); geocentric equatorial (ICRF)
  X, Y, Z in columns 35-45, 47-57, 59-69, each signed (spaces between the sign and the
  digits are allowed).  Read as ``obs_x, obs_y, obs_z`` in km.
* ``v`` (roving, code 247): column 33 ``1``; east longitude (deg) 35-44, latitude (deg)
  46-55, height (m, WGS84) 57-61.  Read as ``obs_lon, obs_lat, obs_alt``.
* ``r`` (radar): radar records (``R``/``r``) are recognised and counted, not returned: they
  hold delays and Doppler shifts, not positions.

Header lines (``COD``, ``CON``, ``OBS``, ``MEA``, ``TEL``, ``NET``, ``ACK``, ``AC2``,
``COM``, ``NUM``, ``BND``) and blank lines are skipped.  Any other line that is not a valid
record raises :class:`Mpc80Error` naming the line number, the reason and the line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import mpc_designation
import numpy as np
import pandas as pd

from zsds.solar.orbits import AU_KM

__all__ = ["MPC80_COLUMNS", "Mpc80Error", "parse_mpc80", "read_mpc80"]

#: Columns of :func:`parse_mpc80` frames.
MPC80_COLUMNS = (
    "designation", "trksub", "discovery", "note1", "obs_type", "mjd", "ra", "dec",
    "mag", "band", "astcat", "stn", "obs_x", "obs_y", "obs_z", "obs_lon", "obs_lat",
    "obs_alt", "line",
)  # fmt: skip

#: Valid column-15 codes (the MPC's ADES-Master ``packUtil.validCodes``).
_OBS_TYPES = frozenset("A PeCBTMcEOHNnRrSsVvXx")
_HEADER_KEYS = frozenset(
    ("COD", "CON", "OBS", "MEA", "TEL", "NET", "ACK", "AC2", "COM", "NUM", "BND")
)
_COMET_TYPES = "PCDXAIS"
_PLANETS = {"J": "Jupiter", "S": "Saturn", "U": "Uranus", "N": "Neptune"}
_DATE = re.compile(r"(\d{4}) (\d\d) (\d\d(?:\.\d*)?)")
# Degrees/hours, minutes (possibly decimal), optional seconds (possibly decimal).
_SEXA = re.compile(r"(\d{1,2}) +(\d{1,2}(?:\.\d*)?)(?: +(\d{1,2}(?:\.\d*)?))?")
_TEMPORARY = re.compile(r"[A-Za-z0-9]{1,7}")


class Mpc80Error(ValueError):
    """An invalid 80-column line (the message names the line number and the reason)."""


def _roman(n: int) -> str:
    out = []
    for value, sym in ((1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"),
                       (90, "XC"), (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"),
                       (4, "IV"), (1, "I")):
        while n >= value:
            out.append(sym)
            n -= value
    return "".join(out)


@cache
def _identify(text: str) -> tuple[str | None, str | None]:
    """(designation, trksub) of columns 1-12 (unpacked; None where absent).

    Raises ValueError (the reason) when the columns hold no valid identification.
    """
    num, prov = text[:5], text[5:12].strip()
    head, kind = num[:4], num[4]
    if kind in _COMET_TYPES and re.fullmatch(r"[0-9 ]{4}", head):
        digits = head.strip()
        if digits:  # numbered comet / interstellar object: 1P, 3I
            if not digits.isdigit() or int(digits) == 0:
                raise ValueError(f"bad periodic comet number {num!r}")
            return f"{int(digits)}{kind}", None
        if not prov:
            raise ValueError(f"comet/satellite orbit type {kind!r} without a designation")
        try:
            return mpc_designation.unpack(kind + prov), None
        except mpc_designation.MPCDesignationError:
            if kind != "S" and _TEMPORARY.fullmatch(prov):
                return None, prov  # a comet reported under a temporary designation
            raise ValueError(f"bad comet/satellite designation {kind + prov!r}") from None
    if re.fullmatch(r"[JSUN]\d{3}S", num):
        return f"{_PLANETS[num[0]]} {_roman(int(num[1:4]))}", None
    number = num.strip()
    if number:
        try:
            info = mpc_designation.detect_format(number)
        except mpc_designation.MPCDesignationError:
            info = {}
        if info.get("type") != "permanent" or len(num.lstrip()) != 5:
            raise ValueError(f"bad packed minor-planet number {num!r}")
        number = mpc_designation.unpack(number)
    provisional = ""
    temporary = None
    if prov:
        try:
            info = mpc_designation.detect_format(prov)
        except mpc_designation.MPCDesignationError:
            info = {}
        if len(prov) == 7 and info.get("format") == "packed" and info.get("type") == "provisional":
            provisional = mpc_designation.unpack(prov)
        elif _TEMPORARY.fullmatch(prov):
            temporary = prov
        else:
            raise ValueError(f"bad designation in columns 6-12: {prov!r}")
    designation = number or provisional or None
    if designation is None and temporary is None:
        raise ValueError("no designation in columns 1-12")
    return designation, (temporary if designation is None else None)


def _mjd(year: int, month: int, day: float) -> float:
    """MJD of a Gregorian calendar date with a fractional day."""
    d = int(day)
    a = (14 - month) // 12
    y = year + 4800 - a
    m = month + 12 * a - 3
    jdn = d + (153 * m + 2) // 5 + 365 * y + y // 4 - y // 100 + y // 400 - 32_045
    return (jdn - 2_400_001) + (day - d)


def _date(field: str) -> float:
    field = field[:4] + " " + field[5:] if field[4:5] in "abcde" else field
    m = _DATE.fullmatch(field.rstrip())
    if not m:
        raise ValueError(f"bad date (columns 16-32) {field!r}")
    year, month, day = int(m[1]), int(m[2]), float(m[3])
    if not (1 <= month <= 12 and 1 <= day < 32):
        raise ValueError(f"date out of range (columns 16-32) {field!r}")
    return _mjd(year, month, day)


def _sexagesimal(field: str, what: str, limit: float) -> float:
    m = _SEXA.fullmatch(field.strip())
    if not m:
        raise ValueError(f"bad {what} {field!r}")
    a, b = float(m[1]), float(m[2])
    c = float(m[3]) if m[3] else 0.0
    if m[3] and "." in m[2]:
        raise ValueError(f"bad {what} {field!r} (decimal minutes followed by seconds)")
    if not (a <= limit and b < 60 and c < 60):
        raise ValueError(f"{what} out of range {field!r}")
    return a + b / 60.0 + c / 3600.0


def _signed(field: str) -> float:
    """A signed number whose sign may stand apart from its digits (``- 5634.1734``)."""
    text = field.replace(" ", "")
    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)", text):
        raise ValueError(f"bad number {field!r}")
    return float(text)


def _parse_record(line: str) -> dict:
    """Fields of a first (or only) line."""
    designation, trksub = _identify(line[:12])
    ra = _sexagesimal(line[32:44], "RA (columns 33-44)", 23) * 15.0
    sign_char = line[44]
    if sign_char not in "+- ":
        raise ValueError(f"bad Dec sign (column 45) {sign_char!r}")
    dec = _sexagesimal(line[45:56], "Dec (columns 45-56)", 90)
    if dec > 90.0:
        raise ValueError(f"Dec beyond 90 deg {line[44:56]!r}")
    mag_text = line[65:70].strip()
    try:
        mag = float(mag_text) if mag_text else np.nan
    except ValueError:
        raise ValueError(f"bad magnitude (columns 66-70) {line[65:70]!r}") from None
    stn = line[77:80]
    if not re.fullmatch(r"[0-9A-Z]{3}", stn):
        raise ValueError(f"bad observatory code (columns 78-80) {stn!r}")
    return {
        "designation": designation, "trksub": trksub, "discovery": line[12] == "*",
        "note1": line[13], "obs_type": line[14], "mjd": _date(line[15:32]), "ra": ra,
        "dec": -dec if sign_char == "-" else dec, "mag": mag, "band": line[70].strip(),
        "astcat": line[71], "stn": stn, "obs_x": np.nan, "obs_y": np.nan, "obs_z": np.nan,
        "obs_lon": np.nan, "obs_lat": np.nan, "obs_alt": np.nan,
    }  # fmt: skip


def _second_line(line: str, prev: dict | None, prev_line: str | None) -> None:
    """Attach an 's'/'v' second line to the record before it (in place)."""
    kind = line[14]
    first = kind.upper()
    if prev is None or prev_line is None or prev["obs_type"] != first:
        raise ValueError(f"'{kind}' line without a preceding '{first}' line")
    if line[:12] != prev_line[:12] or line[77:80] != prev_line[77:80]:
        raise ValueError(f"'{kind}' line does not match the designation/station of its "
                         f"'{first}' line")
    if abs(_date(line[15:32]) - prev["mjd"]) > 1e-5:
        raise ValueError(f"'{kind}' line date differs from its '{first}' line")
    if np.isfinite(prev["obs_x"]) or np.isfinite(prev["obs_lon"]):
        raise ValueError(f"second '{kind}' line for one observation")
    if kind == "s":
        unit = line[32]
        if unit not in "12":
            raise ValueError(f"bad parallax unit (column 33) {unit!r}: 1 (km) or 2 (au)")
        xyz = [_signed(line[a:b]) for a, b in ((34, 45), (46, 57), (58, 69))]
        scale = 1.0 if unit == "1" else AU_KM
        prev["obs_x"], prev["obs_y"], prev["obs_z"] = (v * scale for v in xyz)
    else:
        if line[32] != "1":
            raise ValueError(f"bad roving-observer flag (column 33) {line[32]!r}: must be 1")
        lon, lat = _signed(line[34:44]), _signed(line[45:55])
        alt_text = line[56:61].strip()
        if not re.fullmatch(r"[+-]?\d+", alt_text):
            raise ValueError(f"bad altitude (columns 57-61) {line[56:61]!r}")
        if not (-360.0 <= lon <= 360.0 and -90.0 <= lat <= 90.0):
            raise ValueError(f"roving site out of range: lon {lon}, lat {lat}")
        prev["obs_lon"], prev["obs_lat"], prev["obs_alt"] = lon % 360.0, lat, float(alt_text)


def _is_header(line: str) -> bool:
    return line[:3] in _HEADER_KEYS and line[3:4] in (" ", "") and not _DATE.fullmatch(
        line[15:32].rstrip()
    )


def parse_mpc80(lines: str | Iterable[str]) -> pd.DataFrame:
    """Parse MPC 80-column optical records (all record types; see the module notes).

    Parameters
    ----------
    lines : str or iterable of str
        The records (a whole file's text is split into lines).

    Returns
    -------
    pandas.DataFrame
        One row per observation, columns :data:`MPC80_COLUMNS`: ``designation`` (unpacked:
        a number such as ``"620000"``, a provisional designation such as ``"2008 AA360"``,
        a comet ``"C/2025 N1"``, ``"1P"``, an interstellar object ``"3I"``, a natural
        satellite ``"Jupiter XIII"``; None for a temporary designation), ``trksub`` (the
        temporary designation, else None), ``discovery`` (bool), ``note1``, ``obs_type``
        (column 15), ``mjd`` (UTC), ``ra``, ``dec`` (deg), ``mag`` (NaN when blank),
        ``band``, ``astcat`` (column 72), ``stn``, ``obs_x, obs_y, obs_z`` (geocentric
        position of a space-based observer, km, equatorial ICRF; NaN otherwise),
        ``obs_lon, obs_lat, obs_alt`` (site of a roving observer: east longitude and
        latitude in deg, height in m; NaN otherwise) and ``line`` (1-based line number of
        the record).  ``attrs`` holds the counts ``lines`` (non-blank lines read),
        ``header_lines``, ``second_lines`` and ``radar_lines``.

    Raises
    ------
    Mpc80Error
        For the first invalid line: its number, the reason and its text.
    """
    if isinstance(lines, str):
        lines = lines.splitlines()
    rows: list[dict] = []
    counts = {"lines": 0, "header_lines": 0, "second_lines": 0, "radar_lines": 0}
    prev_line: str | None = None
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n").rstrip()
        if not line:
            continue
        counts["lines"] += 1
        try:
            if "\t" in line:
                raise ValueError("TAB character (80-column records use spaces only)")
            if _is_header(line):
                counts["header_lines"] += 1
                continue
            if len(line) > 80:
                raise ValueError(f"{len(line)} columns, more than 80")
            line = line.ljust(80)
            kind = line[14]
            if kind not in _OBS_TYPES:
                raise ValueError(f"unknown observation type (column 15) {kind!r}")
            if kind in "Rr":  # radar: recognised, not astrometry
                _identify(line[:12])
                _date(line[15:32])
                counts["radar_lines"] += 1
                prev_line = None
                continue
            if kind in "sv":
                _second_line(line, rows[-1] if rows and prev_line else None, prev_line)
                counts["second_lines"] += 1
                prev_line = None
                continue
            rec = _parse_record(line)
            rec["line"] = number
            rows.append(rec)
            prev_line = line
        except ValueError as err:
            raise Mpc80Error(f"line {number}: {err}: {raw.rstrip(chr(13) + chr(10))!r}") from None
    out = pd.DataFrame(rows, columns=list(MPC80_COLUMNS))
    if not rows:
        out = out.astype({"mjd": float, "ra": float, "dec": float, "mag": float})
    for col in ("designation", "trksub"):
        out[col] = pd.Series([r[col] for r in rows], dtype=object)
    out["line"] = out["line"].astype(np.int64)
    out["discovery"] = out["discovery"].astype(bool)
    out.attrs.update(counts)
    return out


def read_mpc80(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read an 80-column file with :func:`parse_mpc80` (errors name the file too)."""
    text = Path(path).read_text(encoding="ascii", errors="replace")
    try:
        return parse_mpc80(text)
    except Mpc80Error as err:
        raise Mpc80Error(f"{path}: {err}") from None
