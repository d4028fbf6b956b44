"""The IPAC table writer against astropy's, byte for byte, on generated tables."""

from __future__ import annotations

import numpy as np
from astropy.io import ascii as astropy_ascii
from astropy.table import Column, MaskedColumn, Table
from hypothesis import given, settings
from hypothesis import strategies as st

from zsds.archive.tables import ipac_text, ipac_text_astropy

_KINDS = ("int64", "int16", "float64", "float32", "bool", "str", "object")
_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
                max_size=12)
_FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)


@st.composite
def column(draw, n: int, name: str) -> Column:
    kind = draw(st.sampled_from(_KINDS))
    unit = draw(st.sampled_from([None, "deg", "mag", "arcsec", "d"]))
    if kind in ("int64", "int16"):
        lim = 2**62 if kind == "int64" else 2**15 - 1
        data = np.array(draw(st.lists(st.integers(-lim, lim), min_size=n, max_size=n)),
                        dtype=kind)
    elif kind in ("float64", "float32"):
        vals = draw(st.lists(_FLOATS, min_size=n, max_size=n))
        with np.errstate(over="ignore"):
            data = np.array(vals, dtype=kind)
    elif kind == "bool":
        data = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    elif kind == "str":
        data = np.array(draw(st.lists(_TEXT, min_size=n, max_size=n)), dtype=str)
        if data.dtype.kind != "U":  # an empty column
            data = data.astype("U1")
    else:  # what ibe.result_table hands over for text columns with nulls
        data = np.empty(n, dtype=object)
        data[:] = draw(st.lists(st.one_of(st.none(), _TEXT, st.integers(-99, 99)),
                                min_size=n, max_size=n))
        return Column(data, name=name, unit=unit)
    if kind != "bool" and draw(st.booleans()):
        mask = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
        return MaskedColumn(data, name=name, mask=mask, unit=unit)
    return Column(data, name=name, unit=unit)


@st.composite
def tables(draw) -> tuple[Table, dict]:
    n = draw(st.integers(0, 6))
    names = draw(st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True),
                          min_size=1, max_size=6, unique=True))
    table = Table([draw(column(n, name)) for name in names])
    keywords = draw(st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True),
                                    st.one_of(st.integers(), _TEXT), max_size=3))
    return table, keywords


@settings(max_examples=300, deadline=None)
@given(tables())
def test_ipac_text_is_astropys_output(case) -> None:
    table, keywords = case
    assert ipac_text(table, keywords) == ipac_text_astropy(table, keywords)


def test_ipac_text_reads_back_with_astropy() -> None:
    table = Table({"ra": [10.5, np.nan], "name": np.array(["a b", ""]),
                   "n": np.array([1, 2], dtype=np.int64)})
    back = astropy_ascii.read(ipac_text(table, {"fixlen": "T"}), format="ipac")
    assert back["ra"][0] == 10.5 and back["ra"].mask[1]
    assert list(back["n"]) == [1, 2] and back.meta["keywords"]["fixlen"]["value"] == "T"


def test_ipac_text_falls_back_for_what_it_does_not_write() -> None:
    table = Table({"x": [1.23456]})
    table["x"].info.format = ".2f"
    assert ipac_text(table) == ipac_text_astropy(table)
    assert "1.23" in ipac_text(table) and "1.23456" not in ipac_text(table)
