"""The per-amplifier non-linearity correction: real coefficients, choice by date, and the round
trip simulator -> raw file -> split."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from zsds.core import nonlinearity
from zsds.core.home import Home
from zsds.split import SplitConfig, read_raw_ccd, split_quadrant


def test_tables_are_package_data_with_64_amplifiers():
    for name, _ in nonlinearity.TABLES:
        table = nonlinearity.load_table(name)
        assert len(table.coeffs) == 64
        assert {c for c, _ in table.coeffs} == set(range(1, 17))
        assert {a for _, a in table.coeffs} == {0, 1, 2, 3}
        src = Path(nonlinearity.__file__).parent.parent / "data" / "instrument"
        assert (src / f"linearity_coeffs_{name}.txt").is_file()


def test_correction_at_30000_dn_equals_the_formula():
    # linearity_coeffs_202004.txt: "3  h  0  -6.27E-12  6.92E-08" (CCD 3, AMP_ID 0 = q1)
    a, b = nonlinearity.load_table("202004").coefficients(3, 0)
    assert (a, b) == (-6.27e-12, 6.92e-08)
    x = 30000.0
    expect = x / (-6.27e-12 * x**2 + 6.92e-08 * x + 1)
    assert nonlinearity.linearize(np.array([x]), a, b)[0] == pytest.approx(expect, rel=1e-12)
    assert expect == pytest.approx(30107.39, abs=0.01)  # +0.36 %
    # linearity_coeffs_201803.txt: "3  f  2  -1.32E-11  8.07E-07" (CCD 3, AMP_ID 2 = q3)
    a, b = nonlinearity.load_table("201803").coefficients(3, 2)
    assert (a, b) == (-1.32e-11, 8.07e-07)
    assert nonlinearity.linearize(np.array([x]), a, b)[0] == pytest.approx(
        x / (a * x**2 + b * x + 1), rel=1e-12
    )
    assert nonlinearity.linearize(np.float32([x]), a, b).dtype == np.float32


@pytest.mark.parametrize(
    ("date", "name"),
    [
        (dt.date(2018, 3, 1), "201803"),
        (dt.date(2019, 10, 22), "201803"),
        (dt.date(2019, 10, 23), "201910"),
        (dt.date(2020, 4, 27), "201910"),
        (dt.date(2020, 4, 28), "202004"),
        (dt.date(2026, 11, 20), "202004"),
    ],
)
def test_table_chosen_by_date(date, name):
    assert nonlinearity.table_for(date).name == name
    jd = (date - dt.date(1858, 11, 17)).days + 2400000.5 + 0.4
    assert nonlinearity.table_for_jd(jd).name == name


def test_delinearize_is_the_inverse_for_every_amplifier():
    y = np.linspace(-200.0, 65000.0, 2001)
    worst = 0.0
    for name, _ in nonlinearity.TABLES:
        for a, b in nonlinearity.load_table(name).coeffs.values():
            back = nonlinearity.linearize(nonlinearity.delinearize(y, a, b), a, b)
            worst = max(worst, float(np.max(np.abs(back - y))))
    assert worst < 1e-6


def test_size_of_the_correction_at_typical_levels():
    """|DNtrue/x - 1| over the 64 amplifiers: <= 0.1 % at 1000 DN, <= 1.7 % up to 50000 DN
    (medians: -0.07/-0.08/-0.02 % at 1000 DN, -1.0/-1.2/+0.06 % at 30000 DN for the
    201803/201910/202004 tables)."""
    for name, _ in nonlinearity.TABLES:
        coeffs = np.array(list(nonlinearity.load_table(name).coeffs.values()))
        for x, limit in ((1000.0, 1.5e-3), (10000.0, 1e-2), (30000.0, 2e-2), (50000.0, 2e-2)):
            rel = 1.0 / (coeffs[:, 0] * x**2 + coeffs[:, 1] * x + 1) - 1
            print(f"{name} {x:7.0f} DN: {100 * rel.min():+.3f} .. {100 * rel.max():+.3f} %")
            assert np.max(np.abs(rel)) < limit


def _flat(home: Home, night: str) -> Path:
    from zsds.sim.run import simulate_calib

    res = simulate_calib(home, night, quad_size=256, ccds=[7], n_bias=0, n_flat=1, filters=("r",))
    return next(p for p in res.raw_files if p.name.endswith("_f.fits.fz"))


def test_simulated_raw_files_are_linear_after_the_split(tmp_path, monkeypatch):
    """The simulator writes the real non-linearity (2019: table 201803, up to ~1 % at the ~20000
    DN of a flat); the split undoes it. Against the same exposure from a linear camera (same
    seed: the non-linearity draws no random numbers) the corrected quadrant agrees to the
    digitisation, the uncorrected one is off by tens of DN."""
    night = "2019-06-01"
    real = _flat(Home(tmp_path / "nonlinear"), night)
    with monkeypatch.context() as m:
        m.setattr(nonlinearity, "delinearize", lambda y, a, b: y)
        linear = _flat(Home(tmp_path / "linear"), night)
    assert real.name == linear.name
    raw, ref = read_raw_ccd(real), read_raw_ccd(linear)
    off = SplitConfig(nonlinearity=False)
    for qid in (1, 2, 3, 4):
        corrected = split_quadrant(raw, qid)
        truth = split_quadrant(ref, qid, off).data
        uncorrected = split_quadrant(raw, qid, off).data
        assert corrected.header["NLTABLE"] == "201803"
        assert np.median(truth) > 15000
        # the digitisation of the two files (each rounded to whole DN) is the only difference
        diff = corrected.data - truth
        assert np.max(np.abs(diff)) < 1.02 and 0.3 < np.std(diff) < 0.5
        assert abs(np.median(diff)) < 0.02
        assert np.median(np.abs(uncorrected - truth)) > 20
