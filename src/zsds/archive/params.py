"""Request-parameter parsing shared by the archive's routers."""

from __future__ import annotations

import math
import re

from astropy.time import Time

#: JD of MJD 0: values below it are taken as MJDs.
MJD_JD = 2400000.5
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_jd(value: str | float | None, name: str, *, end: bool = False) -> float | None:
    """A time given as a JD, an MJD (< 2400000.5) or an ISO date/time (UTC), as a JD.

    A bare date as an ``end`` bound means the end of that UT day, so ``start=D&end=D`` covers
    day D. Empty values are None.

    Raises
    ------
    ValueError
        Naming the parameter when the value cannot be read.
    """
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    try:
        x = float(text)
    except ValueError:
        try:
            jd = float(Time(text, scale="utc").jd)
        except ValueError:
            raise ValueError(f"{name}={text!r}: expected a date (YYYY-MM-DD[Thh:mm:ss]), "
                             "a JD or an MJD") from None
        return jd + 1.0 if end and _DATE_ONLY.match(text) else jd
    if not math.isfinite(x):
        raise ValueError(f"{name}={text!r} is not a finite number")
    return x if x > MJD_JD else x + MJD_JD
