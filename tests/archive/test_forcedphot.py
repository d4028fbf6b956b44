"""Forced photometry on the archived difference images and the ZFPS-compatible service."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from fastapi.testclient import TestClient

from zsds.archive.app import create_app
from zsds.archive.auth import create_user
from zsds.archive.forcedphot import SERVICE_PASSWORD, SERVICE_USER
from zsds.core.psf import moffat_stamps
from zsds.db import connect
from zsds.diffim.forced import (
    LC_COLUMNS,
    aperture_weights,
    forced_photometry,
    measure_stamps,
    product_path,
    read_lc_text,
    shift_psfs,
)

SERVICE = (SERVICE_USER, SERVICE_PASSWORD)
EMAIL, PASS = "fp@example.org", "fp-secret"


@pytest.fixture(scope="module")
def engine(archive_home):
    eng = connect(archive_home.db_url)
    create_user(eng, EMAIL, PASS, replace=True)
    create_user(eng, "other@example.org", "other", replace=True)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def client(archive_home, engine):
    return TestClient(create_app(archive_home))


@pytest.fixture(scope="module")
def candidates(engine) -> pd.DataFrame:
    """Positive candidates of objects detected on all three science epochs, with the PSF
    flux (DN) of the pipeline's own fit, from the database."""
    c = pd.read_sql("SELECT candid, pid, object_id, ra, dec, magpsf, sigmapsf, record "
                    "FROM candidates WHERE isdiffpos = 't'", engine)
    zp = c["record"].map(lambda r: (json.loads(r) if isinstance(r, str) else r)["magzpsci"])
    c["flux"] = 10 ** (-0.4 * (c["magpsf"] - zp))
    c["fluxerr"] = c["flux"] * c["sigmapsf"] / 1.0857
    n = c.groupby("object_id")["pid"].transform("nunique")
    return c[n == 3].drop(columns="record")


# --------------------------------------------------------------------------- pure science


def test_measure_stamps_recovers_injected_flux():
    """Many noise realisations of a known Moffat source: unbiased flux, right errors."""
    rng = np.random.default_rng(42)
    n, size, sigma, flux = 400, 25, 5.0, 1500.0
    dx, dy = rng.uniform(-0.5, 0.5, n), rng.uniform(-0.5, 0.5, n)
    truth = moffat_stamps(dx, dy, np.full(n, 2.8), 3.0, 0.9, 0.3, 41, np.float64)
    centred = moffat_stamps(np.zeros(n), np.zeros(n), np.full(n, 2.8), 3.0, 0.9, 0.3, 41,
                            np.float64)
    psf = shift_psfs(centred, dx, dy)[:, 8:33, 8:33]
    # The placed PSF is the analytic one at the offset (to < 2% of its peak at this nearly
    # critically sampled FWHM).
    np.testing.assert_allclose(psf, truth[:, 8:33, 8:33], atol=0.02 * truth.max())
    data = flux * truth[:, 8:33, 8:33] + rng.normal(0, sigma, (n, size, size))
    var = np.full_like(data, sigma**2)
    data[0, 12, 12] = np.nan  # one bad pixel under the core: still measured
    apw = aperture_weights(dx, dy, 4.5, size)
    res = measure_stamps(data, var, psf, apw)
    pull = (res["flux"] - flux) / res["fluxunc"]
    assert abs(pull.mean()) < 0.15 and 0.9 < pull.std() < 1.1
    expected_sigma = sigma / np.sqrt((psf[1:] ** 2).sum(axis=(1, 2)))
    np.testing.assert_allclose(res["fluxunc"][1:], expected_sigma, rtol=1e-9)
    assert 0.8 < np.median(res["chisq"]) < 1.2
    assert abs(np.median(res["fluxap"]) / flux - 1) < 0.02
    assert (res["procstatus"] == 0).all()
    # No source: flux / sigma is a standard normal.
    empty = measure_stamps(rng.normal(0, sigma, (n, size, size)), var, psf, apw)
    z = empty["flux"] / empty["fluxunc"]
    assert abs(z.mean()) < 0.15 and 0.9 < z.std() < 1.1
    # Mostly masked: no flux, procstatus 56.
    data[1, :, :14] = np.nan
    data[1, :14, :] = np.nan
    res = measure_stamps(data, var, psf, apw)
    assert res["procstatus"][1] == 56 and np.isnan(res["flux"][1])


def test_injected_source_in_archived_image(archive_home, engine):
    """A PSF source added to an archived difference image at a sub-pixel position is
    recovered by forced photometry at its sky position; the other epochs stay at zero."""
    d = pd.read_sql("SELECT * FROM diff_images ORDER BY pid", engine).iloc[0]
    path = archive_home.path(d["relpath"])
    with fits.open(path) as h:
        hdr = h[0].header
    w = WCS(hdr)
    x, y = 181.37, 301.71
    ra, dec = (float(v[0]) for v in w.all_pix2world([x], [y], 0))
    before = forced_photometry(archive_home, engine, ra, dec)
    assert len(before) == 3  # three epochs cover every position of the quadrant
    z0 = before["forcediffimflux"] / before["forcediffimfluxunc"]
    assert (np.abs(z0) < 4).all(), z0  # an empty position: consistent with 0
    with fits.open(product_path(path, "diffimgpsf.fits")) as h:
        psf = h[0].data.astype(float)
    xi, yi = round(x), round(y)
    c = psf.shape[0] // 2
    flux = 3000.0
    # Placed with the measurement's own sub-pixel shift: an undersampled stamp (FWHM ~1.5 px on
    # the Kolmogorov simulator) has no exact shift, and two spline orders differ by ~1.5% in
    # flux there; this test is about the position, the stamps and the fit.
    stamp = flux * shift_psfs(psf[None], np.array([x - xi]), np.array([y - yi]))[0]
    with fits.open(path, mode="update") as h:
        h[0].data[yi - c:yi + c + 1, xi - c:xi + c + 1] += stamp.astype(np.float32)
    after = forced_photometry(archive_home, engine, ra, dec)
    hit = after["pid"] == d["pid"]
    delta = after.loc[hit, "forcediffimflux"].iloc[0] - before.loc[hit.to_numpy(),
                                                                  "forcediffimflux"].iloc[0]
    print(f"injected {flux:.0f} DN, recovered {delta:.1f} DN")
    assert abs(delta / flux - 1) < 0.01, delta
    got = after.loc[hit, "forcediffimflux"].iloc[0]
    assert abs(got - flux) < 4 * after.loc[hit, "forcediffimfluxunc"].iloc[0]
    np.testing.assert_allclose(after.loc[~hit, "forcediffimflux"],
                               before.loc[~hit.to_numpy(), "forcediffimflux"])


def test_forced_flux_matches_candidates(archive_home, engine, candidates):
    """At detected transients, the forced flux agrees with the pipeline's PSF flux."""
    objs = candidates.groupby("object_id")[["ra", "dec"]].mean().head(20)
    rows = []
    for oid, o in objs.iterrows():
        lc = forced_photometry(archive_home, engine, o["ra"], o["dec"])
        assert (lc["procstatus"] == 0).all()
        rows.append(lc.merge(candidates[candidates["object_id"] == oid], on="pid"))
    m = pd.concat(rows)
    assert len(m) == 3 * len(objs)
    ratio = m["forcediffimflux"] / m["flux"]
    pull = (m["forcediffimflux"] - m["flux"]) / m["forcediffimfluxunc"]
    print(f"forced/candidate PSF flux: median ratio {ratio.median():.4f}, median |pull| "
          f"{pull.abs().median():.2f} sigma over {len(m)} epochs")
    assert abs(ratio.median() - 1) < 0.01
    assert pull.abs().median() < 0.5
    np.testing.assert_allclose(m["forcediffimfluxunc"], m["fluxerr"], rtol=0.15)


# --------------------------------------------------------------------------- ZFPS service


def _status(client, batch: bool, **extra):
    cgi = "getBatchForcedPhotometryRequests.cgi" if batch else "getForcedPhotometryRequests.cgi"
    return client.get(f"/cgi-bin/{cgi}", auth=SERVICE,
                      params={"email": EMAIL, "userpass": PASS, "option": "All recent jobs",
                              "action": "Query Database", **extra})


def _download(client, link: str, **kw) -> pd.DataFrame:
    resp = client.get(link, **kw)
    assert resp.status_code == 200, resp.text
    text = resp.text
    assert sum(line.startswith("#") for line in text.splitlines()) >= 50
    assert "# Requested input R.A. = " in text
    header = next(line for line in text.splitlines() if line and not line.startswith("#"))
    assert header.split() == [c + "," for c in LC_COLUMNS[:-1]] + [LC_COLUMNS[-1]]
    df = pd.read_csv(io.StringIO(text), sep=r"\s+", comment="#")
    df.columns = [c.rstrip(",") for c in df.columns]
    return df


def test_zfps_single_and_batch_flow(client, archive_home, engine, candidates):
    obj = candidates.groupby("object_id")[["ra", "dec"]].mean().iloc[0]
    ra, dec = float(obj["ra"]), float(obj["dec"])
    # No job yet: 400 "Zero records".
    none = _status(client, batch=False)
    assert none.status_code == 400 and "Zero records" in none.text
    r = client.get("/cgi-bin/requestForcedPhotometry.cgi", auth=SERVICE,
                   params={"ra": ra, "dec": dec, "jdstart": 2461365.0, "jdend": 2461366.0,
                           "email": EMAIL, "userpass": PASS})
    assert r.status_code == 200, r.text
    st = _status(client, batch=False)
    assert st.status_code == 200
    table = pd.read_html(io.StringIO(st.text))[0]
    assert list(table.columns) == ["reqId", "ra", "dec", "startJD", "endJD", "created",
                                   "started", "ended", "machine", "exitcode", "lightcurve"]
    assert len(table) == 1 and table["exitcode"].iloc[0] == 0
    links = re.findall(r"/ztf/ops.+?lc\.txt", st.text)
    assert len(links) == 1 and "forcedphotometry_req" in links[0]
    assert links[0].endswith(f"forcedphotometry_req{int(table['reqId'].iloc[0]):08d}_lc.txt")
    lc = _download(client, links[0], auth=SERVICE)
    direct = forced_photometry(archive_home, engine, ra, dec, 2461365.0, 2461366.0)
    assert len(lc) == len(direct) == 3
    np.testing.assert_allclose(lc["forcediffimflux"], direct["forcediffimflux"], rtol=1e-12)
    assert set(lc["filter"]) == {"ZTF_r"} and (lc["procstatus"] == 0).all()
    cand = candidates[candidates["object_id"] == candidates.loc[
        (candidates["ra"] - ra).abs().idxmin(), "object_id"]]
    both = lc.merge(cand, on="pid")
    assert len(both) == 3
    assert np.all(np.abs(both["forcediffimflux"] / both["flux"] - 1) < 0.05)

    # Batch: two transients and one empty position; a JD range that keeps everything.
    d = pd.read_sql("SELECT relpath FROM diff_images ORDER BY pid", engine)["relpath"][0]
    with fits.open(archive_home.path(d)) as h:
        era, edec = (float(v[0]) for v in WCS(h[0].header).all_pix2world([60.2], [450.6], 0))
    objs = candidates.groupby("object_id")[["ra", "dec"]].mean().iloc[1:3]
    ras = [*objs["ra"].tolist(), era]
    decs = [*objs["dec"].tolist(), edec]
    r = client.post("/cgi-bin/batchfp.py/submit", auth=SERVICE,
                    data={"ra": json.dumps(ras), "dec": json.dumps(decs),
                          "jdstart": "2461300", "jdend": "2461400", "email": EMAIL,
                          "userpass": PASS})
    assert r.status_code == 200, r.text
    st = _status(client, batch=True)
    table = pd.read_html(io.StringIO(st.text))[0]
    assert len(table) == 3 and (table["exitcode"] == 0).all()
    np.testing.assert_allclose(table["ra"], ras, atol=1e-6)
    links = re.findall(r"/ztf/ops.+?lc\.txt", st.text)
    assert len(links) == 3 and all("batchfp_req" in x for x in links)
    lcs = [_download(client, x, auth=(EMAIL, PASS)) for x in links]
    assert all(len(x) == 3 for x in lcs)
    assert (lcs[0]["forcediffimsnr"] > 10).all() and (lcs[1]["forcediffimsnr"] > 10).all()
    assert (np.abs(lcs[2]["forcediffimsnr"]) < 4).all()
    # The single request is not in the batch table, and nothing is pending.
    assert len(pd.read_html(io.StringIO(_status(client, batch=False).text))[0]) == 1
    assert _status(client, batch=True, option="Pending jobs").status_code == 400

    # Downloads: not anonymous, not with a wrong service password.
    assert client.get(links[0]).status_code == 401
    assert client.get(links[0], auth=(SERVICE_USER, "wrong")).status_code == 401
    assert client.get(links[0], auth=("other@example.org", "other")).status_code == 200
    assert client.get(re.sub(r"lc/[0-9a-f]+/", "lc/0000/", links[0]),
                      auth=SERVICE).status_code == 404
    # Another user sees none of these jobs.
    other = client.get("/cgi-bin/getBatchForcedPhotometryRequests.cgi", auth=SERVICE,
                       params={"email": "other@example.org", "userpass": "other"})
    assert other.status_code == 400 and "Zero records" in other.text


@pytest.mark.parametrize("kwargs, status", [
    ({"params": {"ra": 339.0, "dec": 25.0}}, 401),                            # nobody
    ({"params": {"ra": 339.0, "dec": 25.0}, "auth": SERVICE}, 401),           # service only
    ({"params": {"ra": 339.0, "dec": 25.0, "email": EMAIL, "userpass": "x"},
      "auth": SERVICE}, 401),
    ({"params": {"ra": 339.0, "dec": 95.0, "email": EMAIL, "userpass": PASS}}, 400),
    ({"params": {"ra": "abc", "dec": 25.0, "email": EMAIL, "userpass": PASS}}, 400),
    ({"params": {"ra": 339.0, "dec": 25.0, "jdstart": 2, "jdend": 1, "email": EMAIL,
                 "userpass": PASS}}, 400),
    ({"params": {"dec": 25.0, "email": EMAIL, "userpass": PASS}}, 400),
])
def test_single_request_errors(client, kwargs, status):
    r = client.get("/cgi-bin/requestForcedPhotometry.cgi", **kwargs)
    assert r.status_code == status, r.text


def test_batch_errors(client):
    url = "/cgi-bin/batchfp.py/submit"
    base = {"email": EMAIL, "userpass": PASS}
    too_many = client.post(url, auth=SERVICE, data={**base, "ra": json.dumps([339.0] * 1501),
                                                    "dec": json.dumps([25.0] * 1501)})
    assert too_many.status_code == 400 and "1500" in too_many.text
    mismatch = client.post(url, auth=SERVICE, data={**base, "ra": "[339.0, 339.1]",
                                                    "dec": "[25.0]"})
    assert mismatch.status_code == 400
    anon = client.post(url, data={"ra": "[339.0]", "dec": "[25.0]"})
    assert anon.status_code == 401


def test_api_forcedphot(client, archive_home, engine, candidates):
    obj = candidates.groupby("object_id")[["ra", "dec"]].mean().iloc[3]
    params = {"ra": float(obj["ra"]), "dec": float(obj["dec"])}
    assert client.get("/api/forcedphot", params=params).status_code == 401
    r = client.get("/api/forcedphot", params=params, auth=(EMAIL, PASS))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["columns"] == list(LC_COLUMNS)
    direct = forced_photometry(archive_home, engine, params["ra"], params["dec"])
    np.testing.assert_allclose([row["forcediffimflux"] for row in body["rows"]],
                               direct["forcediffimflux"])
    csv = client.get("/api/forcedphot", params={**params, "format": "csv"}, auth=(EMAIL, PASS))
    np.testing.assert_allclose(pd.read_csv(io.StringIO(csv.text))["forcediffimfluxunc"],
                               direct["forcediffimfluxunc"])
    txt = client.get("/api/forcedphot", params={**params, "format": "lc"}, auth=(EMAIL, PASS))
    np.testing.assert_allclose(read_lc_text(txt.text)["jd"], direct["jd"])
    bad = client.get("/api/forcedphot", params={**params, "format": "fits"},
                     auth=(EMAIL, PASS))
    assert bad.status_code == 400
