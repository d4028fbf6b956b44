"""Truth table of the packet-triggering cuts, which decide which candidates become alerts.

The expected outcomes are written out from IPAC's table (ES section 9.1, quoted in
ZTF_REFERENCE.md 2.4 item 9: S/N >= 5, magpsf <= 23.5, nbad <= 4, fwhm <= 7 px,
elong <= 1.6, -0.4 <= magdiff <= 0.75, no rb cut), not computed from the code under test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from zsds.diffim.config import PacketCuts

#: A candidate in the middle of every range.
GOOD = {"snr": 12.0, "magpsf": 19.0, "nbad": 0, "fwhm": 2.5, "elong": 1.1, "magdiff": 0.1,
        "rb": 0.9}

#: (field, value, passes) rows: every bound, both sides, and what a missing value does.
TABLE = [
    ("snr", 5.0, True), ("snr", 4.999, False), ("snr", np.nan, False),
    ("magpsf", 23.5, True), ("magpsf", 23.501, False), ("magpsf", np.nan, False),
    ("nbad", 4, True), ("nbad", 5, False),
    ("fwhm", 7.0, True), ("fwhm", 7.01, False), ("fwhm", np.nan, False),
    ("elong", 1.6, True), ("elong", 1.601, False),
    ("magdiff", -0.4, True), ("magdiff", -0.401, False),
    ("magdiff", 0.75, True), ("magdiff", 0.751, False), ("magdiff", np.nan, False),
    ("rb", 0.0, True), ("rb", np.nan, True),  # no real-bogus cut by default
]


def test_ipac_defaults() -> None:
    c = PacketCuts()
    assert (c.min_snr, c.max_magpsf, c.max_nbad, c.max_fwhm, c.max_elong) == (
        5.0, 23.5, 4, 7.0, 1.6)
    assert c.magdiff_range == (-0.4, 0.75) and c.min_rb == 0.0


def test_truth_table() -> None:
    rows = [dict(GOOD, **{field: value}) for field, value, _ in TABLE]
    got = PacketCuts().apply(pd.DataFrame([GOOD, *rows]))
    want = [True] + [passes for *_, passes in TABLE]
    bad = [(TABLE[k - 1][:2], bool(got[k])) for k in range(1, len(want)) if got[k] != want[k]]
    assert got[0] and not bad, bad


@pytest.mark.parametrize(("rb", "passes"), [(0.65, True), (0.649, False), (np.nan, False)])
def test_an_rb_cut_when_asked(rb: float, passes: bool) -> None:
    """With a real-bogus cut (the suggested user filter's 0.65), a missing rb counts as 0."""
    got = PacketCuts(min_rb=0.65).apply(pd.DataFrame([dict(GOOD, rb=rb)]))
    assert bool(got[0]) is passes


def test_without_an_rb_column_only_a_zero_cut_passes() -> None:
    c = pd.DataFrame([{k: v for k, v in GOOD.items() if k != "rb"}])
    assert PacketCuts().apply(c).tolist() == [True]
    assert PacketCuts(min_rb=0.1).apply(c).tolist() == [False]


def test_every_cut_is_needed() -> None:
    """A candidate failing exactly one cut fails, whichever cut it is."""
    fails = {"snr": 3.0, "magpsf": 24.0, "nbad": 9, "fwhm": 9.0, "elong": 2.0, "magdiff": 1.0}
    rows = [dict(GOOD, **{k: v}) for k, v in fails.items()]
    assert not PacketCuts().apply(pd.DataFrame(rows)).any()
