"""Read and write orbits in the MPC's ``MPCORB.DAT`` fixed-width format.

Columns used (1-based, inclusive), as in the MPC's format description::

    1-7    a7     designation (packed, <= 7 characters)
    9-13   f5.2   H              15-19  f5.2   G
    21-25  a5     epoch (packed date, 0h TT)
    27-35  f9.5   M (deg)        38-46  f9.5   argument of perihelion (deg, J2000 ecliptic)
    49-57  f9.5   node (deg)     60-68  f9.5   inclination (deg)
    71-79  f9.7   e              81-91  f11.8  mean daily motion n (deg/day)
    93-103 f11.7  a (au)         106    i1     U      108-116 a9   reference
    118-122 #obs  124-126 #opp   128-136 arc   138-141 rms   143-149 perturbers
    151-160 computer             162-165 flags 167-194 readable designation

Epochs are whole days of TT; this package's epochs are TDB, which differs by < 2 ms and is
ignored. Orbits whose epoch is not a whole MJD are propagated (two-body) to the nearest one
before writing. Only elliptic orbits fit the format. The precision is that of the fields:
1e-5 deg for angles, 1e-7 for e and a, 0.01 mag for H and G.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.time import Time
from numpy.typing import ArrayLike, NDArray

from zsds.solar.orbits import GM_SUN, Orbits, elements_to_state, propagate, state_to_elements

__all__ = ["pack_epoch", "read_mpcorb", "unpack_epoch", "write_mpcorb"]

_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUV"  # 0-31 for packed months and days
_CENTURY = {"I": 1800, "J": 1900, "K": 2000, "L": 2100}

_HEADER = (
    "MINOR PLANET CENTER ORBIT DATABASE (MPCORB) -- format replica written by zsds\n"
    "Osculating elements, mean ecliptic and equinox J2000.0; epochs 0h TT (packed); "
    "angles in degrees, a in au.\n"
    "\n"
    "Des'n     H     G   Epoch     M        Peri.      Node       Incl.       e            n"
    "           a        Reference #Obs #Opp    Arc    rms  Perts   Computer\n"
    "\n" + "-" * 160 + "\n"
)


def pack_epoch(mjd: ArrayLike) -> NDArray[np.str_]:
    """Pack whole-day MJDs as MPC 5-character dates, e.g. 60400 -> ``"K243V"`` (2024-03-31).

    Parameters
    ----------
    mjd : array_like
        MJD values (rounded to the nearest day).

    Returns
    -------
    ndarray of str
    """
    mjd = np.round(np.atleast_1d(np.asarray(mjd, dtype=float)))
    ymd = Time(mjd, format="mjd", scale="tt").ymdhms
    year, month, day = (np.asarray(ymd[k], dtype=int) for k in ("year", "month", "day"))
    if np.any((year < 1800) | (year > 2199)):
        raise ValueError("packed epochs cover the years 1800-2199 only")
    letters = np.array(["I", "J", "K", "L"])[year // 100 - 18]
    digits = np.array(list(_DIGITS))
    yy = np.char.zfill((year % 100).astype(str), 2)
    return np.char.add(np.char.add(np.char.add(letters, yy), digits[month]), digits[day])


def unpack_epoch(packed: ArrayLike) -> NDArray[np.float64]:
    """Inverse of :func:`pack_epoch`: packed dates to MJD (0h TT)."""
    s = pd.Series(np.atleast_1d(np.asarray(packed, dtype=str))).str.strip()
    year = s.str[0].map(_CENTURY).to_numpy() + s.str[1:3].astype(int).to_numpy()
    month = s.str[3].map(_DIGITS.index).to_numpy()
    day = s.str[4].map(_DIGITS.index).to_numpy()
    ymd = {"year": year, "month": month, "day": day}
    return np.asarray(Time(ymd, format="ymdhms", scale="tt").mjd, dtype=float)


def _fmt(fmt: str, values: NDArray, width: int) -> NDArray[np.str_]:
    out = np.char.mod(fmt, values)
    bad = np.char.str_len(out) > width
    if np.any(bad):
        raise ValueError(f"value(s) {values[bad][:3]} do not fit a {width}-character field")
    return out


def _at_whole_days(orbits: Orbits) -> Orbits:
    """Propagate orbits with fractional-day epochs to the nearest whole MJD."""
    frac = orbits.epoch != np.round(orbits.epoch)
    if not np.any(frac):
        return orbits
    sub = orbits[frac]
    r, v = elements_to_state(sub)
    new_epoch = np.round(sub.epoch)
    r, v = propagate(r, v, new_epoch - sub.epoch)
    moved = state_to_elements(r, v, new_epoch, sub.designation, sub.H, sub.G)
    fields = ("a", "e", "inc", "node", "argperi", "mean_anomaly", "epoch")
    kw = {name: getattr(orbits, name).copy() for name in fields}
    for name in fields:
        kw[name][frac] = getattr(moved, name)
    return Orbits(designation=orbits.designation, H=orbits.H, G=orbits.G, **kw)


def write_mpcorb(orbits: Orbits, path: str | os.PathLike[str], header: bool = True) -> None:
    """Write orbits as an ``MPCORB.DAT``-style file.

    Parameters
    ----------
    orbits : Orbits
        Elliptic orbits with designations of at most 7 characters.
    path : path-like
        Output file.
    header : bool, optional
        Write the short header block ending in a dashed separator line.
    """
    if np.any(orbits.e >= 1.0):
        raise ValueError("MPCORB holds elliptic orbits only (e < 1)")
    if np.any(np.char.str_len(orbits.designation) > 7):
        raise ValueError("designations must have at most 7 characters")
    orb = _at_whole_days(orbits)
    n_motion = np.rad2deg(np.sqrt(GM_SUN / orb.a**3))
    H = np.where(np.isfinite(orb.H), np.char.mod("%5.2f", orb.H), " " * 5)
    cols = [
        np.char.ljust(orb.designation, 7), " ", H, " ",
        _fmt("%5.2f", orb.G, 5), " ", pack_epoch(orb.epoch), " ",
        _fmt("%9.5f", np.remainder(orb.mean_anomaly, 360.0), 9), "  ",
        _fmt("%9.5f", orb.argperi, 9), "  ", _fmt("%9.5f", orb.node, 9), "  ",
        _fmt("%9.5f", orb.inc, 9), "  ", _fmt("%9.7f", orb.e, 9), " ",
        _fmt("%11.8f", n_motion, 11), " ", _fmt("%11.7f", orb.a, 11),
        "  ", " ",  # 104-106: U blank
        " ", np.char.ljust("zsds", 9), " ", "    0", " ", "  0", " ", " " * 9, " ",
        "0.00", " ", "   ", " ", "   ", " ", np.char.ljust("zsds", 10), " ", "0000", " ",
        np.char.ljust(orb.designation, 28),
    ]  # fmt: skip
    lines = np.asarray(cols[0])
    for c in cols[1:]:
        lines = np.char.add(lines, c)
    text = "\n".join(lines.tolist())
    with open(Path(path), "w", encoding="ascii") as fh:
        if header:
            fh.write(_HEADER)
        fh.write(text + ("\n" if len(lines) else ""))


def read_mpcorb(path: str | os.PathLike[str]) -> Orbits:
    """Read an ``MPCORB.DAT``-format file (the real file or one written by :func:`write_mpcorb`).

    Everything up to a line of dashes is treated as header; blank lines are skipped.

    Parameters
    ----------
    path : path-like
        Input file.

    Returns
    -------
    Orbits
        Designations from columns 1-7 (packed form); ``H`` is NaN where blank.
    """
    lines = Path(path).read_text(encoding="ascii", errors="replace").splitlines()
    start = next((i + 1 for i, ln in enumerate(lines) if ln.startswith("-----")), 0)
    body = pd.Series([ln for ln in lines[start:] if ln.strip()], dtype=object)

    def col(lo: int, hi: int) -> pd.Series:
        return body.str.slice(lo - 1, hi).str.strip()

    def num(lo: int, hi: int) -> NDArray[np.float64]:
        return pd.to_numeric(col(lo, hi).replace("", np.nan)).to_numpy(dtype=float)

    return Orbits(
        designation=col(1, 7).to_numpy(dtype=str),
        a=num(93, 103),
        e=num(71, 79),
        inc=num(60, 68),
        node=num(49, 57),
        argperi=num(38, 46),
        mean_anomaly=num(27, 35),
        epoch=unpack_epoch(col(21, 25).to_numpy()) if len(body) else np.array([]),
        H=num(9, 13),
        G=np.nan_to_num(num(15, 19), nan=0.15),
    )
