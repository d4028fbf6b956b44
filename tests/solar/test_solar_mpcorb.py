"""Tests for zsds.solar.mpcorb."""

from dataclasses import replace

import numpy as np
import pytest

from zsds.solar.ephemeris import ephemerides
from zsds.solar.mpcorb import pack_epoch, read_mpcorb, unpack_epoch, write_mpcorb
from zsds.solar.orbits import Orbits
from zsds.solar.population import simulate_population

# A line laid out like the real MPCORB.DAT (used only as a format fixture).
CERES_LINE = (
    "00001    3.34  0.15 K2555 188.70269   73.27343   80.25221   10.58780  0.0789126  "
    "0.21424651   2.7660512  0 E2024-V47  7330 125 1801-2024 0.80 M-v 30k MPCLINUX   4000"
    "      (1) Ceres              20241101"
)


def _angle_diff(x, y):
    return (np.asarray(x) - np.asarray(y) + 180.0) % 360.0 - 180.0


def test_pack_epoch():
    np.testing.assert_array_equal(
        pack_epoch([51544, 60400, 60800, 40000]), ["K0011", "K243V", "K2555", "J685O"]
    )
    np.testing.assert_array_equal(unpack_epoch(["K2555", "J685O"]), [60800.0, 40000.0])


def test_round_trip(tmp_path):
    orb = simulate_population(180.0, 0.0, 60390.0, 1.0, seed=4)
    orb = replace(orb, epoch=np.full(len(orb), 60390.0))
    path = tmp_path / "MPCORB.DAT"
    write_mpcorb(orb, path)
    back = read_mpcorb(path)
    np.testing.assert_array_equal(back.designation, orb.designation)
    np.testing.assert_array_equal(back.epoch, orb.epoch)
    np.testing.assert_allclose(back.a, orb.a, atol=5.1e-8)
    np.testing.assert_allclose(back.e, orb.e, atol=5.1e-8)
    np.testing.assert_allclose(back.H, orb.H, atol=5.1e-3)
    np.testing.assert_allclose(back.G, orb.G, atol=5.1e-3)
    for name in ("inc", "node", "argperi", "mean_anomaly"):
        assert np.abs(_angle_diff(getattr(back, name), getattr(orb, name))).max() <= 5.1e-6
    # Column layout: header ends with dashes; fields sit in their documented columns.
    lines = path.read_text().splitlines()
    first = lines[lines.index(next(ln for ln in lines if ln.startswith("---"))) + 1]
    assert len(first) == 194
    assert first[0:7] == orb.designation[0]
    assert float(first[92:103]) == pytest.approx(orb.a[0], abs=1e-7)
    assert float(first[80:91]) == pytest.approx(np.rad2deg(0.01720209895 / orb.a[0] ** 1.5), 1e-7)


def test_reads_real_layout(tmp_path):
    path = tmp_path / "real.dat"
    path.write_text("header text\n\n" + "-" * 160 + "\n" + CERES_LINE + "\n\n")
    orb = read_mpcorb(path)
    assert orb.designation[0] == "00001"
    assert orb.H[0] == pytest.approx(3.34)
    assert orb.epoch[0] == 60800.0
    assert orb.mean_anomaly[0] == pytest.approx(188.70269)
    assert orb.argperi[0] == pytest.approx(73.27343)
    assert orb.node[0] == pytest.approx(80.25221)
    assert orb.inc[0] == pytest.approx(10.58780)
    assert orb.e[0] == pytest.approx(0.0789126)
    assert orb.a[0] == pytest.approx(2.7660512)


def test_fractional_epoch_is_propagated(tmp_path):
    orb = simulate_population(180.0, 0.0, 60390.3, 0.5, seed=5)
    path = tmp_path / "frac.dat"
    write_mpcorb(orb, path)
    back = read_mpcorb(path)
    assert np.all(back.epoch == np.round(orb.epoch))
    e1, e2 = ephemerides(orb, 60391.0), ephemerides(back, 60391.0)
    far = e1["delta"].to_numpy() > 0.2  # format precision dominates for very close objects
    assert np.abs(e1["ra"] - e2["ra"])[far].max() * 3600 < 1.0
    assert np.abs(e1["dec"] - e2["dec"])[far].max() * 3600 < 1.0


def test_rejects_unsupported(tmp_path):
    hyp = Orbits(["h"], a=-1.0, e=1.5, inc=1, node=1, argperi=1, mean_anomaly=1, epoch=60000)
    with pytest.raises(ValueError):
        write_mpcorb(hyp, tmp_path / "x")
    long_name = Orbits(["12345678"], 2.0, 0.1, 1, 1, 1, 1, 60000)
    with pytest.raises(ValueError):
        write_mpcorb(long_name, tmp_path / "x")
