"""Resource limits of the archive service: every size, count, depth and radius a request can set.

A request beyond a limit is answered with a 4xx naming the parameter and the limit, never a
500 and never an allocation first. The numbers are here, in one place, so that the routers,
the parsers (:mod:`zsds.archive.where`, :mod:`zsds.archive.adql`) and the documentation
(``docs/archive.md``, section "Security") agree.
"""

from __future__ import annotations

import math

#: Largest and smallest integers a query may hold: the database columns are at most 64-bit
#: (SQLite raises ``OverflowError`` beyond, PostgreSQL ``NumericValueOutOfRange``).
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

#: Smallest cone radius (deg): cdshealpix panics (a ``BaseException``) below about
#: 3e-7 deg, so 0.01 arcsec is refused with a 400 before it gets there.
MIN_CONE_RADIUS_DEG = 0.01 / 3600.0

#: Deepest nesting of parentheses (and NOT) in a WHERE or ADQL condition: the parsers are
#: recursive, and Python's stack ends near 1000 frames (about 140 levels).
MAX_NESTING = 50
#: Most operators (AND, OR, arithmetic) of one condition: SQLite refuses expression trees
#: deeper than 1000, and a chain of operators is that deep.
MAX_OPERATORS = 500
#: Longest ADQL query (characters).
MAX_ADQL_CHARS = 64_000
#: Most items of a SELECT list (SQLite returns at most 2000 columns).
MAX_SELECT_ITEMS = 500
#: Most literals of one query: each is a bound parameter, and SQLite allows 32766.
MAX_LITERALS = 5_000
#: Most geometric (CONTAINS, INTERSECTS, DISTANCE) terms of one ADQL query.
MAX_GEOMETRY_TERMS = 8

#: Most rows of an ephemeris given to the moving-object search.
MAX_EPHEMERIS_ROWS = 100_000

#: Largest section (pixels) of ``/ui/api/image.png`` read into memory at once.
MAX_SECTION_PIXELS = 6144 * 6144

#: Most TAP parameters kept with an async job, and the longest value of each (the query may
#: be up to :data:`MAX_ADQL_CHARS`).
MAX_JOB_PARAMS = 16
MAX_JOB_PARAM_CHARS = 1_000


class LimitError(ValueError):
    """A request parameter beyond one of the service's limits (answered with a 4xx)."""


def check_int64(value: int, name: str) -> int:
    """``value`` when it fits a 64-bit signed integer.

    Raises
    ------
    LimitError
        Naming the parameter otherwise.
    """
    if not INT64_MIN <= value <= INT64_MAX:
        raise LimitError(f"{name}: integer {value} is outside the 64-bit range "
                         f"[{INT64_MIN}, {INT64_MAX}]")
    return value


def check_cone_radius(radius_deg: float, name: str, max_deg: float | None = None) -> float:
    """A cone radius (deg) within ``[MIN_CONE_RADIUS_DEG, max_deg]``.

    Raises
    ------
    LimitError
        For a radius that is not finite, below 0.01 arcsec (0 included) or above ``max_deg``.
    """
    if not math.isfinite(radius_deg) or radius_deg < MIN_CONE_RADIUS_DEG:
        raise LimitError(f"{name}: the radius must be at least 0.01 arcsec "
                         f"({MIN_CONE_RADIUS_DEG:.3g} deg), got {radius_deg}")
    if max_deg is not None and radius_deg > max_deg:
        raise LimitError(f"{name}: the radius must be at most {max_deg} deg, got {radius_deg}")
    return radius_deg
