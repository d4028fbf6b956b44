"""A light curve whose matchfile is missing or unreadable (issue 19, faults).

The object is in ``lc_objects`` but its matchfile was deleted, or damaged, on disk: every
route that reads it answered a 500 (``FileNotFoundError`` / ``ValueError`` from the HDF5
reader). It must be a 404 naming the object and its matchfile (relative to the home, never
the server's own path), in the format the client asked for.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from zsds.archive.app import create_app
from zsds.core.home import Home
from zsds.lightcurves.ids import oid
from zsds.lightcurves.search import upsert_objects

MISSING = "products/lc/0645/rc20/zr/ztf_000645_zr_c06_q1_dr0.pytable"
BROKEN = "products/lc/0645/rc21/zr/ztf_000645_zr_c06_q2_dr0.pytable"
OID_MISSING = int(oid(645, 2, 6, 1, 7))
OID_BROKEN = int(oid(645, 2, 6, 2, 8))


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> TestClient:
    home = Home.resolve(tmp_path_factory.mktemp("lcfault") / "home").ensure()
    broken = home.path(BROKEN)
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 500)  # an HDF5 signature, then nothing
    app = create_app(home)
    upsert_objects(app.state.ctx.engine, {
        "oid": [OID_MISSING, OID_BROKEN], "ra": [10.0, 10.01], "dec": [20.0, 20.0],
        "matchfile": [MISSING, BROKEN], "nobs": [5, 5], "medianmag": [18.0, 18.0]})
    # raise_server_exceptions=False: a 500 is what a client sees, not a test error.
    return TestClient(app, raise_server_exceptions=False)


def _assert_404(resp, oid_: int, relpath: str, home_root: str | None = None) -> None:
    assert resp.status_code == 404, (resp.status_code, resp.text[:300])
    assert str(oid_) in resp.text and relpath in resp.text
    assert "matchfile" in resp.text
    if home_root:
        assert home_root not in resp.text


@pytest.mark.parametrize(("oid_", "relpath"), [(OID_MISSING, MISSING), (OID_BROKEN, BROKEN)])
@pytest.mark.parametrize("fmt", ["CSV", "VOTABLE", "IPAC_TABLE"])
def test_nph_light_curves_by_id(client, oid_, relpath, fmt):
    resp = client.get("/cgi-bin/ZTF/nph_light_curves", params={"ID": oid_, "FORMAT": fmt})
    _assert_404(resp, oid_, relpath, str(client.app.state.ctx.home.root))
    if fmt == "VOTABLE":
        assert 'name="QUERY_STATUS" value="ERROR"' in resp.text


def test_nph_light_curves_by_cone(client):
    resp = client.get("/cgi-bin/ZTF/nph_light_curves",
                      params={"POS": "CIRCLE 10.0 20.0 0.0003", "FORMAT": "CSV"})
    _assert_404(resp, OID_MISSING, MISSING)


@pytest.mark.parametrize("route", ["/ui/api/lightcurve", "/ui/api/lightcurve.png",
                                   "/ui/api/periodogram"])
@pytest.mark.parametrize(("oid_", "relpath"), [(OID_MISSING, MISSING), (OID_BROKEN, BROKEN)])
def test_web_ui_routes(client, route, oid_, relpath):
    resp = client.get(route, params={"oid": oid_, "bands": "false"})
    _assert_404(resp, oid_, relpath, str(client.app.state.ctx.home.root))
    assert resp.json()["detail"].startswith(f"light curve of oid {oid_} unavailable")


def test_the_object_page_itself_still_renders(client):
    # The page reads only lc_objects; its plots then ask the API routes above.
    assert client.get("/ui/lightcurve", params={"oid": OID_MISSING}).status_code == 200
