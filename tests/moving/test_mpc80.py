"""Reader of real MPC 80-column files (zsds.moving.mpc80)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from zsds.moving.mpc80 import MPC80_COLUMNS, Mpc80Error, parse_mpc80, read_mpc80
from zsds.moving.orbitfit import fit_orbit
from zsds.solar.observer import OBSERVATORIES, observer_heliocentric_posvel, observer_posvel_for
from zsds.solar.orbits import AU_KM

DATA = Path(__file__).resolve().parents[1] / "data" / "mpc80"


def _directions(df: pd.DataFrame) -> np.ndarray:
    ra, dec = np.deg2rad(df["ra"].to_numpy()), np.deg2rad(df["dec"].to_numpy())
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=1)


def test_real_multistation_file_every_line() -> None:
    """All 1,415 lines of (12893) 1998 QS55 (1983-2019, 35 stations, WISE 's' lines)."""
    path = DATA / "12893_1998QS55.obs"
    n_lines = sum(1 for ln in path.read_text().splitlines() if ln.strip())
    df = read_mpc80(path)
    assert list(df.columns) == list(MPC80_COLUMNS)
    assert df.attrs["lines"] == n_lines == 1415
    assert len(df) + df.attrs["second_lines"] == n_lines
    assert len(df) == 1401 and df.attrs["second_lines"] == 14
    assert (df["designation"] == "12893").all() and df["trksub"].isna().all()
    assert df["stn"].nunique() == 35 and set(df["stn"]) <= set(OBSERVATORIES)
    assert df["mjd"].min() == pytest.approx(45615.40478)  # 1983 Oct 8.40478
    assert df["discovery"].sum() == 2  # one asterisk on each of its two designations
    sat = df[df["obs_type"] == "S"]
    assert len(sat) == 14 and (sat["stn"] == "C51").all()
    r = np.linalg.norm(sat[["obs_x", "obs_y", "obs_z"]].to_numpy(), axis=1)
    assert np.all((r > 6_800) & (r < 6_950))  # WISE: a ~525 km high orbit
    # WISE looks near its zenith: the carried offset points near the observed direction (a
    # wrong sign, axis or unit would not).
    v = sat[["obs_x", "obs_y", "obs_z"]].to_numpy() / r[:, None]
    ang = np.degrees(np.arccos(np.sum(v * _directions(sat), axis=1)))
    assert ang.max() < 20.0
    ground = df[df["obs_type"] != "S"]
    assert np.isnan(ground[["obs_x", "obs_lon"]].to_numpy()).all()
    first = df.iloc[0]
    assert first["ra"] == pytest.approx((20 + 52 / 60 + 3.89 / 3600) * 15.0, abs=1e-9)
    assert first["dec"] == pytest.approx(-(15 + 47 / 60 + 20.0 / 3600), abs=1e-9)


def test_real_file_observer_positions_and_orbit() -> None:
    """Every station's parallax (and WISE's carried position) enters a real 2017 fit."""
    df = read_mpc80(DATA / "12893_1998QS55.obs")
    pos, _ = observer_posvel_for(df)
    geo, _ = observer_heliocentric_posvel(df["mjd"].to_numpy(), "500")
    off = np.linalg.norm(pos - geo, axis=1) * AU_KM
    assert np.all(off > 6_300) and np.all(off < 6_950)  # every observer off the geocentre
    sat = (df["stn"] == "C51").to_numpy()
    carried = df.loc[sat, ["obs_x", "obs_y", "obs_z"]].to_numpy()
    assert np.allclose((pos - geo)[sat] * AU_KM, carried, atol=1e-3)

    year = np.floor((df["mjd"] - 51544.5) / 365.25 + 2000)
    g = df[year == 2017].assign(sigma=0.5)  # 222 obs, 13 stations, 179 days
    fit = fit_orbit(g)
    assert fit.ok and fit.rms_arcsec < 0.4
    # Without the stations' parallax the same arc fits three times worse.
    fit500 = fit_orbit(g.assign(stn="500"))
    assert fit500.rms_arcsec > 2.5 * fit.rms_arcsec


def test_real_comets_interstellar_spacecraft_reduced_precision() -> None:
    df = read_mpc80(DATA / "mixed_real.obs")
    assert df.attrs["lines"] == 22 and df.attrs["second_lines"] == 10 and len(df) == 12
    des = df["designation"].tolist()
    assert des[:2] == ["2020 KH42"] * 2
    assert des[4:10] == ["C/2010 Y10"] * 2 + ["C/2005 L3"] * 2 + ["C/2006 O4"] * 2
    assert des[10:] == ["3I", "433"]
    assert df["trksub"].tolist()[2:4] == ["LTMQ6Ga"] * 2  # an NEOCP temporary designation
    by = df.set_index("line")
    # 's' lines in au (New Horizons at ~50 au, STEREO-A, SOHO) and in km (TESS, WISE).
    assert np.linalg.norm(by.loc[1, ["obs_x", "obs_y", "obs_z"]].to_numpy(float)) / AU_KM \
        == pytest.approx(np.linalg.norm([14.3990440, -44.6299726, -17.5109273]))
    assert by.loc[5, "obs_y"] == pytest.approx(393453.279)
    assert by.loc[13, "obs_x"] == pytest.approx(-3522.9048)
    assert by.loc[9, "obs_z"] == pytest.approx(-0.33509167 * AU_KM)
    # SOHO's reduced-precision record: RA to 0.1 s, Dec to 1 arcsec.
    assert by.loc[17, "ra"] == pytest.approx((7 + 47 / 60 + 36.9 / 3600) * 15, abs=1e-9)
    assert by.loc[17, "dec"] == pytest.approx(19 + 21 / 60 + 41 / 3600, abs=1e-9)
    assert by.loc[17, "note1"] == "3"
    # 1893 plate of (433) Eros, code 'A' (reduced from B1950), 4-decimal date.
    assert by.loc[22, "obs_type"] == "A" and by.loc[22, "mjd"] == pytest.approx(12765.4132)
    # Observer positions for every row: spacecraft from their 's' lines.
    pos, _ = observer_posvel_for(df)
    assert np.isfinite(pos).all()


def _rec(ident: str, kind: str, date: str, ra: str, dec: str, stn: str, mag: str = "",
         disc: str = " ") -> str:
    """One 80-column record from its fields (each padded to its columns)."""
    line = (f"{ident:<12.12}{disc} {kind}{date:<17.17}{ra:<12.12}{dec:<12.12}{'':9}"
            f"{mag:<6.6}{'':6}{stn:>3}")
    assert len(line) == 80
    return line


def test_reduced_precision_roving_and_other_designations() -> None:
    # Built to the MPC format pages (no real roving record was found in public sources).
    date = "2009 09 27.31042"
    rov = _rec("     K09R05F", "V", date, "01 43 58.97", "+18 07 21.8", "247", "19.2 R")
    v_line = rov[:14] + "v" + rov[15:32] + f"1 {'242.4532':<10} {'+34.5217':<10} {1700:>5}"
    v_line += " " * 16 + "247"
    assert len(v_line) == 80
    lines = [
        "COD 247",
        rov,
        v_line,
        _rec("     K09R05F", "C", "1938 02 18.9", "12 34.5", "+12 34", "010"),
        _rec("     K09R05F", "C", "1938 02 18.91", "12 34.56", "-02 03.4", "010"),
        _rec("     K09R05F", "C", "1938 02 18.92", "12 34 05", "-02 03 04", "010"),
        _rec("    CK25N010", "C", "2025 07 03.948219", "18 01 44.983", "-18 39 35.17", "W68"),
        _rec("0001I", "C", "2017 10 19.40000", "01 59 37.24", "+02 23 27.2", "F51"),
        _rec("J013S", "C", "2020 01 01.00000", "10 00 00.00", "+10 00 00.0", "568"),
        _rec("     K09R05F", "R", date, "", "", "253"),
        _rec("     K09R05F", "r", date, "S", "", "253"),
    ]
    df = parse_mpc80(lines)
    assert len(df) == 7
    assert df.attrs == {"lines": 11, "header_lines": 1, "second_lines": 1, "radar_lines": 2}
    first = df.iloc[0]
    assert (first["obs_lon"], first["obs_lat"], first["obs_alt"]) == (242.4532, 34.5217, 1700.0)
    assert df.iloc[1]["ra"] == pytest.approx((12 + 34.5 / 60) * 15)
    assert df.iloc[1]["dec"] == pytest.approx(12 + 34 / 60)
    assert df.iloc[2]["ra"] == pytest.approx((12 + 34.56 / 60) * 15)
    assert df.iloc[2]["dec"] == pytest.approx(-(2 + 3.4 / 60))
    assert df.iloc[3]["dec"] == pytest.approx(-(2 + 3 / 60 + 4 / 3600))
    assert df["designation"].tolist()[4:] == ["C/2025 N1", "1I", "Jupiter XIII"]
    # The roving site enters the observer position: 242.4532 E, 34.5217 N is ~200 km from
    # Palomar (I41), and the site's own position is used, not a code's.
    pos, _ = observer_posvel_for(df.iloc[:1])
    i41, _ = observer_heliocentric_posvel(df["mjd"].iloc[:1].to_numpy(), "I41")
    d_km = np.linalg.norm(pos - i41) * AU_KM
    assert 100.0 < d_km < 250.0
    with pytest.raises(ValueError, match=r"247 .*must carry a site"):
        observer_heliocentric_posvel([55000.0], "247")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("     K09R05F  C2009 13 27.31042 01 43 58.97 +18 07 21.8          19.2 R      I41",
         "date out of range"),
        ("     K09R05F  C2009 09 27.31042 25 43 58.97 +18 07 21.8          19.2 R      I41",
         "RA"),
        ("     K09R05F  C2009 09 27.31042 01 43 58.97 *18 07 21.8          19.2 R      I41",
         "Dec sign"),
        ("     K09R05F  C2009 09 27.31042 01 43 58.97 +18 07 21.8          1x.2 R      I41",
         "magnitude"),
        ("     K09R05F  Q2009 09 27.31042 01 43 58.97 +18 07 21.8          19.2 R      I41",
         "observation type"),
        ("     K09R05F  s2009 09 27.31042 1 - 3522.9048 + 2925.0063 + 5163.4745   70582C51",
         "without a preceding 'S'"),
        ("     K09R05F  C2009 09 27.31042 01 43 58.97 +18 07 21.8          19.2 R      I41 extra",
         "more than 80"),
        ("     ab$cd    C2009 09 27.31042 01 43 58.97 +18 07 21.8          19.2 R      I41",
         "columns 6-12"),
        ("B0433         C2009 09 27.31042 01 43 58.97 +18 07 21.8          19.2 R      I41",
         None),  # valid: (110433)
        ("This is not an observation", "no designation|bad"),
    ],
)
def test_invalid_lines_are_named(line: str, reason: str | None) -> None:
    good = "     K09R05F  C2009 09 27.31042 01 43 58.97 +18 07 21.8          19.2 R      I41"
    if reason is None:
        assert parse_mpc80([good, line])["designation"].tolist() == ["2009 RF5", "110433"]
        return
    with pytest.raises(Mpc80Error, match=rf"line 2: .*({reason})"):
        parse_mpc80([good, line])


def test_satellite_line_must_match_its_first_line(tmp_path) -> None:
    s_line = "    CK05L030  S2010 05 24.27985 11 45 53.84 +41 53 18.8                w70582C51"
    bad = "    CK05L030  s2010 05 25.27985 1 - 3522.9048 + 2925.0063 + 5163.4745   70582C51"
    with pytest.raises(Mpc80Error, match="line 2: 's' line date differs"):
        parse_mpc80([s_line, bad])
    path = tmp_path / "bad.obs"
    path.write_text(s_line + "\n" + bad.replace("25.27985 1", "24.27985 3") + "\n")
    with pytest.raises(Mpc80Error, match=r"bad\.obs: line 2: bad parallax unit"):
        read_mpc80(path)
