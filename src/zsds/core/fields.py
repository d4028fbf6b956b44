"""The ZTF field grid (primary grid 1-881 and secondary grid 1001-1895).

Read from the real grid file shipped with the ``ztffields`` package, once.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Field:
    """One field of the ZTF grid.

    Attributes
    ----------
    fieldid : int
    ra, dec : float
        Field centre (deg, ICRS).
    ebv : float
        Galactic reddening E(B-V).
    gal_l, gal_b, ecl_lon, ecl_lat : float
        Galactic and ecliptic coordinates of the centre (deg).
    """

    fieldid: int
    ra: float
    dec: float
    ebv: float
    gal_l: float
    gal_b: float
    ecl_lon: float
    ecl_lat: float

    @property
    def is_primary(self) -> bool:
        return self.fieldid < 1000


@functools.cache
def field_table() -> pd.DataFrame:
    """The whole grid as a DataFrame indexed by field id."""
    import ztffields

    path = os.path.join(os.path.dirname(ztffields.__file__), "data", "ztf_fields.txt")
    table = pd.read_csv(path)
    table = table.rename(
        columns={
            "ID": "fieldid",
            "RA": "ra",
            "Dec": "dec",
            "Ebv": "ebv",
            "GalLong": "gal_l",
            "GalLat": "gal_b",
            "EclLong": "ecl_lon",
            "EclLat": "ecl_lat",
        }
    )
    table["fieldid"] = table["fieldid"].astype(int)
    return table.drop(columns=["Entry"]).set_index("fieldid", drop=False)


def get_field(fieldid: int) -> Field:
    """Look up a field; raise ValueError naming the id if it is not on the ZTF grid."""
    table = field_table()
    try:
        row = table.loc[int(fieldid)]
    except (KeyError, ValueError):
        raise ValueError(
            f"unknown ZTF field id {fieldid!r}: valid ids are 1-881 (primary grid) "
            "and 1001-1895 (secondary grid)"
        ) from None
    values = {k: (int(row[k]) if k == "fieldid" else float(row[k])) for k in Field.__annotations__}
    return Field(**values)


def primary_fields() -> pd.DataFrame:
    """Fields of the primary grid (ids below 1000)."""
    table = field_table()
    return table[table.fieldid < 1000]
