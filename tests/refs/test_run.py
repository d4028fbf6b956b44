"""End to end: simulate 16 r-band exposures -> calibrate -> reference build -> truth checks.

A bright transient (one input) and an asteroid (two inputs, moving) are injected into the
calibrated inputs and into the simulator's truth before the build, since the short simulated
night has none bright enough; the co-add must reject them.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from sqlalchemy import func, inspect, select, text

from zsds.calib.build import build_calibrations
from zsds.core.home import Home
from zsds.core.psf import moffat_stamps
from zsds.db import connect, init_db
from zsds.db.engine import MIGRATIONS, SCHEMA_VERSION, schema_version, session
from zsds.db.schema import QuadrantProduct, Reference
from zsds.ingest import ingest_incoming
from zsds.instcal.run import calibrate_night
from zsds.io.fitsio import write_image
from zsds.refs.coadd import reference_grid
from zsds.refs.evaluate import evaluate_references
from zsds.refs.run import RefBuildConfig, build_references, make_rfid
from zsds.refs.select import SelectConfig
from zsds.sim.run import simulate_calib, simulate_night

NIGHT = "2026-11-20"
FIELD, CCD, QID, N = 645, 6, 1, 512
CFG = RefBuildConfig(select=SelectConfig(min_epochs=15))


def _inject(home: Home, sci: str, ra: float, dec: float, mag: float, kind: int, sid: int) -> None:
    """Add a Moffat point source to a calibrated sciimg and a row to its exposure's truth."""
    path = home.path(sci)
    with fits.open(path) as h:
        data, hdr = h[0].data.astype(np.float32), h[0].header.copy()
    x, y = WCS(hdr).all_world2pix(ra, dec, 0)
    ix, iy = round(float(x)), round(float(y))
    st = moffat_stamps(np.array([x - ix]), np.array([y - iy]),
                       np.array([float(hdr["SEEING"]) / 1.012]), 2.5, 1.0, 0.0, 31, np.float64)[0]
    flux = 10 ** (-0.4 * (mag - float(hdr["MAGZP"])))
    data[iy - 15:iy + 16, ix - 15:ix + 16] += (flux * st).astype(np.float32)
    write_image(path, data, hdr)
    tpath = next(home.truth.glob(f"*/{int(hdr['EXPID'])}")) / f"c{CCD:02d}_sources.parquet"
    t = pd.read_parquet(tpath)
    row = {c: t[c].iloc[0] for c in t.columns}
    row.update(ccdid=CCD, qid=QID, id=f"injected{sid}", kind=kind, ra=float(ra), dec=float(dec),
               x=float(x), y=float(y), mag=mag, flux_dn=flux)
    new = pd.DataFrame([row])[t.columns].astype(t.dtypes.to_dict())
    pd.concat([t, new], ignore_index=True).to_parquet(tpath)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    t0 = time.perf_counter()
    home = Home.resolve(tmp_path_factory.mktemp("refs"))
    simulate_calib(home, NIGHT, N, [CCD], seed=2, n_bias=5, n_flat=3, filters=("r",))
    simulate_night(home, NIGHT, 16, [FIELD], N, [CCD], seed=2, filters=("r",))
    engine = connect(home.db_url)
    init_db(engine)
    assert all(r.ok for r in ingest_incoming(home, engine))
    build_calibrations(home, engine, NIGHT)
    out = calibrate_night(home, engine, NIGHT, quad=QID)
    assert [o.message for o in out if not o.ok] == []
    with session(engine) as s:
        scis = s.scalars(select(QuadrantProduct.relpath).where(
            QuadrantProduct.kind == "sciimg").order_by(QuadrantProduct.pid)).all()
    # Injection sites on the reference grid, away from the sky's sources.
    ref = reference_grid(FIELD, CCD, QID, N, N)
    (ra_t, ra_a1, ra_a2), (dec_t, dec_a1, dec_a2) = ref.all_pix2world(
        [300.0, 150.0, 158.0], [200.0, 330.0, 333.0], 0)
    _inject(home, scis[3], ra_t, dec_t, 17.5, 3, 1)
    _inject(home, scis[7], ra_a1, dec_a1, 18.0, 4, 2)
    _inject(home, scis[8], ra_a2, dec_a2, 18.0, 4, 2)
    t1 = time.perf_counter()
    outcomes = build_references(home, engine, config=CFG)
    t2 = time.perf_counter()
    print(f"\nsimulate+calibrate {t1 - t0:.1f} s, reference build {t2 - t1:.1f} s")
    return home, engine, outcomes


def test_products_and_row(built):
    home, engine, outcomes = built
    assert len(outcomes) == 1
    o = outcomes[0]
    assert o.ok, o.message
    assert (o.field, o.ccdid, o.qid, o.fid, o.version) == (FIELD, CCD, QID, 2, 1)
    assert o.rfid == make_rfid(FIELD, 2, 1, CCD, QID) == 645_200_120
    assert set(o.products) == {"refimg", "refunc", "refcov", "refmskimg", "refpsf", "refpsfcat",
                               "refsexcat", "refimlog"}
    assert all(p.exists() for p in o.products.values())
    assert "/v001/" in o.products["refimg"].as_posix()
    hdr = fits.getheader(o.products["refimg"])
    for key in ("MAGZP", "CLRCOEFF", "NFRAMES", "RFID", "JDSTART", "JDEND", "SEEING", "MAGLIM",
                "INFOBITS", "CTYPE1"):
        assert key in hdr, key
    assert hdr["NFRAMES"] >= 15 and hdr["RFID"] == o.rfid and hdr["INFOBITS"] == 0
    assert hdr["JDEND"] > hdr["JDSTART"] > 2.4e6
    assert fits.getdata(o.products["refimg"]).dtype == np.dtype(">f4")
    assert fits.getdata(o.products["refcov"]).dtype == np.dtype(">i2")
    cat = fits.getdata(o.products["refpsfcat"])
    assert {"ra", "dec", "mag", "sigmag", "flux", "flags"} <= set(cat.columns.names)
    with session(engine) as s:
        row = s.get(Reference, o.rfid)
        assert row.nframes == hdr["NFRAMES"] and len(row.input_pids) == row.nframes
        assert row.relpath == str(o.products["refimg"].relative_to(home.root))


def test_science_bars(built):
    home, _, _ = built
    q = evaluate_references(home).iloc[0]
    print(f"\nco-add MAGLIM {q.maglim:.3f}, median input MAGLIM {q.input_maglim:.3f}, gain "
          f"{q.depth_gain:.3f} mag; ZP offset {q.zp_offset:+.4f} ({q.n_stars} stars); "
          f"registration rms {q.astrom_rms_ra:.4f}/{q.astrom_rms_dec:.4f} arcsec; "
          f"minority transients/asteroids {q.n_minority}, survivors {q.n_survivors}")
    assert q.depth_gain >= 1.0
    assert abs(q.zp_offset) <= 0.01 and q.n_stars >= 10
    assert q.n_minority == 3 and q.n_survivors == 0
    assert max(q.astrom_rms_ra, q.astrom_rms_dec) <= 0.03


def test_rebuild_is_idempotent(built):
    home, engine, outcomes = built
    again = build_references(home, engine, field=FIELD, ccd=CCD, quad=QID, filt="r", config=CFG)
    assert [(o.ok, o.rfid, o.version) for o in again] == [(True, outcomes[0].rfid, 1)]
    assert "up to date" in again[0].message
    with session(engine) as s:
        assert s.scalar(select(func.count()).select_from(Reference)) == 1


def test_too_few_epochs(built):
    home, engine, _ = built
    cfg = RefBuildConfig(select=SelectConfig(min_epochs=20, max_epochs=40))
    out = build_references(home, engine, config=cfg)
    assert len(out) == 1 and not out[0].ok and out[0].rfid is None
    assert "not enough good epochs" in out[0].message and "min_epochs=20" in out[0].message
    assert build_references(home, engine, field=999, config=cfg) == []


def test_migration_v1_to_v2(tmp_path):
    engine = connect(f"sqlite:///{tmp_path / 'v1.db'}")
    with engine.begin() as conn:
        MIGRATIONS[0](conn)
        conn.execute(text("insert into schema_version (version, applied_at) "
                          "values (1, CURRENT_TIMESTAMP)"))
    assert schema_version(engine) == 1 and not inspect(engine).has_table("references")
    assert init_db(engine) == SCHEMA_VERSION
    assert schema_version(engine) == SCHEMA_VERSION and inspect(engine).has_table("references")
