"""Light curves end to end on a small simulated survey run by the executive.

One CCD of 512 x 512 quadrants (256 px hold too few stars for the astrometry): 15 reference
epochs on night 0, then one exposure on each of 10 nights drawn from 20 days (25 epochs per
light curve), calibration only. Built once per module (~4 min). The full 45-epoch survey of
``zsds simulate survey`` is what ``zsds eval lightcurves`` measures (docs/lightcurves.md).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tables
from click.testing import CliRunner
from sqlalchemy import func, select

from zsds.cli.main import cli
from zsds.core.home import Home
from zsds.db import connect, init_db, session
from zsds.db.schema import LightCurveObject, MatchfileRecord
from zsds.evaluation.survey import SurveyConfig, simulate_survey
from zsds.lightcurves.build import build_unit, find_units
from zsds.lightcurves.evaluate import evaluate_lightcurves
from zsds.lightcurves.ids import parse_oid
from zsds.lightcurves.matchfile import read_matchfile
from zsds.lightcurves.model import TRANSIENT_MATCHID0
from zsds.lightcurves.query import IRSA_LC_COLUMNS, find_objects, lightcurve_table

SURVEY = SurveyConfig(start="2026-09-10", field=645, ccds=(6,), quad_size=512, ref_epochs=15,
                      n_nights=10, span_days=20, seed=1, subtract=False)


@pytest.fixture(scope="module")
def survey_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lc") / "home"
    home = Home.resolve(root).ensure()
    engine = connect(home.db_url)
    init_db(engine)
    nights = simulate_survey(home, engine, SURVEY, n_workers=2)
    assert len(nights) == 11
    engine.dispose()
    return root


@pytest.fixture(scope="module")
def built(survey_home: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Home, object]:
    root = tmp_path_factory.mktemp("lcb") / "home"
    shutil.copytree(survey_home, root)
    home = Home.resolve(root)
    engine = connect(home.db_url)
    result = CliRunner().invoke(cli, ["lightcurves", "build", "--home", str(root),
                                      "--workers", "2"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return home, engine


def test_matchfiles_have_the_ipac_structure_and_ids(built) -> None:
    home, engine = built
    units = find_units(engine)
    assert len(units) == 4
    with session(engine) as s:
        mfs = s.execute(select(MatchfileRecord)).scalars().all()
    assert len(mfs) == 4
    for mf in mfs:
        path = home.path(mf.path)
        with tables.open_file(path) as f:  # PyTables reads it as it reads IPAC's
            g = f.root.matches
            assert {t._v_name for t in g} >= {"exposures", "sources", "sourcedata",
                                                "transients", "transientdata"}
            assert int(g._v_attrs.fieldID) == 645 and int(g._v_attrs.rcID) == mf.rcid
        ms = read_matchfile(path)
        assert len(ms.exposures) == 25
        assert np.all(np.diff(ms.exposures["obsmjd"]) > 0)
        assert len(ms.sources) == mf.nsources > 20
        f, fid, ccd, q, m = parse_oid(int(ms.sources["oid"][0]))
        assert (f, fid, ccd, q, m) == (645, 2, mf.ccdid, mf.qid, ms.sources["matchid"][0])
        assert np.all(ms.transients["matchid"] >= TRANSIENT_MATCHID0)
        # Raw and refined photometry differ by the epoch's refinement only.
        e = {int(x): k for k, x in enumerate(ms.exposures["expid"])}
        k = np.array([e[int(x)] for x in ms.sourcedata["expid"]])
        # (A point whose PSF fit gave no positive flux has no magnitude, raw or refined.)
        has_mag = np.isfinite(ms.sourcedata["psfmag"])
        assert has_mag.mean() > 0.95  # measured 0.979 (faint points fitted to no positive flux)
        assert not np.isfinite(ms.sourcedata["mag"][~has_mag]).any()
        np.testing.assert_allclose(ms.sourcedata["mag"][has_mag] - ms.sourcedata["psfmag"][has_mag],
                                   ms.exposures["zprefine"][k][has_mag], atol=2e-5)
        # Metrics are there and consistent with the points.
        bright = ms.sources[ms.sources["ngoodobs"] >= 20]
        assert len(bright) > 5
        assert np.all(np.isfinite(bright["stetsonj"])) and np.all(bright["magrms"] > 0)
        assert ms.features is not None and ms.features.shape[1] > 100


def test_rebuild_is_idempotent(built) -> None:
    home, engine = built
    with session(engine) as s:
        n0 = s.execute(select(func.count()).select_from(LightCurveObject)).scalar_one()
    unit = find_units(engine)[0]
    before = read_matchfile(home.path(unit.matchfile_relpath()), objects_only=True)
    build_unit(home, engine, unit)
    after = read_matchfile(home.path(unit.matchfile_relpath()), objects_only=True)
    with session(engine) as s:
        n1 = s.execute(select(func.count()).select_from(LightCurveObject)).scalar_one()
    assert n1 == n0
    np.testing.assert_array_equal(before.sources["oid"], after.sources["oid"])
    np.testing.assert_array_equal(before.transients["oid"], after.transients["oid"])
    np.testing.assert_allclose(before.sources["medianmag"], after.sources["medianmag"])


def test_refinement_against_truth(built) -> None:
    home, engine = built
    # "Bright" as in zsds eval lightcurves and docs/lightcurves.md: median S/N >= 300.
    q, _bright, _var = evaluate_lightcurves(home, engine, bright_snr=300.0)
    assert q.n_bright >= 5
    # The bar of the issue: <= 5 mmag after refinement for bright non-variable stars, and
    # the refinement must help (the per-epoch PS1 calibration alone is worse).
    assert q.rms_refined_mmag <= 5.0
    assert q.rms_refined_mmag < q.rms_raw_mmag


def test_cone_search_and_lightcurve_table(built) -> None:
    home, engine = built
    ms = read_matchfile(home.path(find_units(engine)[0].matchfile_relpath()))
    i = int(np.argmax(ms.sources["ngoodobs"]))
    ra, dec = float(ms.sources["ra"][i]), float(ms.sources["dec"][i])
    objs = find_objects(engine, ra, dec, 2.0)
    assert int(objs["oid"].iloc[0]) == int(ms.sources["oid"][i])
    assert objs["dist_arcsec"].iloc[0] < 0.1
    lc = lightcurve_table(home, objs.iloc[:1])
    assert list(lc.columns) == list(IRSA_LC_COLUMNS)
    assert len(lc) == ms.sources["nobs"][i]
    assert set(lc["filtercode"]) == {"zr"}
    masked = lightcurve_table(home, objs.iloc[:1], bad_catflags_mask=32768)
    assert len(masked) <= len(lc)


def test_cli_get_with_plot(built, tmp_path: Path) -> None:
    home, engine = built
    ms = read_matchfile(home.path(find_units(engine)[1].matchfile_relpath()),
                        objects_only=True)
    i = int(np.argmax(ms.sources["ngoodobs"]))
    out, png = tmp_path / "lc.csv", tmp_path / "lc.png"
    result = CliRunner().invoke(cli, [
        "lightcurves", "get", "--home", str(home.root), "--ra", str(ms.sources["ra"][i]),
        "--dec", str(ms.sources["dec"][i]), "--radius", "1.5", "--out", str(out),
        "--plot", str(png)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("oid,expid,hjd,mjd,mag,magerr,catflags,filtercode")
    assert png.stat().st_size > 20_000
    result = CliRunner().invoke(cli, ["lightcurves", "get", "--home", str(home.root),
                                      "--ra", "10", "--dec", "10", "--radius", "2"])
    assert result.exit_code != 0 and "no light-curve object" in result.output


def test_large_catalogue_is_imported_on_the_cluster(built, tmp_path) -> None:
    """Above ``distributed_rows`` objects the catalogue goes through hats-import on the Dask
    cluster: the same objects as the in-memory writer's."""
    import lsdb
    from distributed import Client, LocalCluster

    from zsds.lightcurves.build import write_objects_catalog

    home, _ = built
    copy = Home.resolve(tmp_path / "h")
    shutil.copytree(home.path("products/lc/objects"), copy.path("products/lc/objects"))
    small = lsdb.read_hats(home.path("products/lc/hats/ztf_lc_objects")).compute()
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        path = write_objects_catalog(copy, client=client, distributed_rows=0)
    assert path == copy.path("products/lc/hats/ztf_lc_objects")
    big = lsdb.read_hats(path).compute()
    assert sorted(big["oid"]) == sorted(small["oid"]) and len(big) > 1000
    assert "hats_builder=hats-import" in (path / "hats.properties").read_text()


def test_hats_catalogue_is_readable_by_lsdb(built) -> None:
    lsdb = pytest.importorskip("lsdb")
    home, engine = built
    path = home.path("products/lc/hats/ztf_lc_objects")
    cat = lsdb.read_hats(path)
    with session(engine) as s:
        n = s.execute(select(func.count()).select_from(LightCurveObject)).scalar_one()
        oids = set(s.execute(select(LightCurveObject.oid)).scalars())
    df = cat.compute()
    assert len(df) == n
    assert set(df["oid"].astype("int64")) == oids
    assert {"oid", "ra", "dec", "stetsonj", "period", "percentiles_3"} <= set(df.columns)
    assert sum(c.startswith("lc_") for c in df.columns) > 100
    # A cone search through lsdb finds the object the database finds.
    row = df.iloc[0]
    near = cat.cone_search(ra=float(row["ra"]), dec=float(row["dec"]), radius_arcsec=1.0)
    assert int(row["oid"]) in set(near.compute()["oid"].astype("int64"))


def test_build_on_postgresql(survey_home: Path, tmp_path: Path) -> None:
    """The same build against PostgreSQL: the metadata copied from the SQLite home."""
    from tests.db.conftest import pg_engine
    from zsds.db.schema import Exposure, QuadrantProduct, Reference

    root = tmp_path / "home"
    shutil.copytree(survey_home, root)
    home = Home.resolve(root)
    lite = connect(home.db_url)
    gen = pg_engine()
    pg = next(gen)
    try:
        init_db(pg)
        for table in (Exposure.__table__, QuadrantProduct.__table__, Reference.__table__):
            with lite.connect() as conn:
                rows = [dict(r) for r in conn.execute(select(table)).mappings()]
            with pg.begin() as conn:
                conn.execute(table.insert(), rows)
        unit = find_units(pg)[0]
        out = build_unit(home, pg, unit)
        assert out["sources"] > 20
        ms = read_matchfile(home.path(unit.matchfile_relpath()), objects_only=True)
        i = int(np.argmax(ms.sources["ngoodobs"]))
        objs = find_objects(pg, float(ms.sources["ra"][i]), float(ms.sources["dec"][i]), 1.0)
        assert int(objs["oid"].iloc[0]) == int(ms.sources["oid"][i])
    finally:
        gen.close()


def test_period_recovery_at_the_survey_cadence(built) -> None:
    """Injected sky-model variables with the pipeline's measured errors, at the cadence of
    the default survey (15 reference epochs + 30 nights in 60 days, from the survey
    scheduler): the periodogram finds >= 90% of the periods over the sky's mix of variables,
    and of the sinusoids, RR Lyrae-like and contact binaries each.  Detached binaries, whose
    narrow eclipses get ~3 points at this cadence, have a lower floor (measured ~35%)."""
    import datetime as dt

    from zsds.lightcurves.evaluate import period_recovery
    from zsds.lightcurves.model import EXPOSURES_DTYPE, MatchSet
    from zsds.sim.observing import survey_schedule

    home, engine = built
    ms = read_matchfile(home.path(find_units(engine)[0].matchfile_relpath()))
    cadence = SurveyConfig()
    later = survey_schedule(dt.date.fromisoformat(cadence.start) + dt.timedelta(days=1),
                            cadence.n_nights, cadence.span_days, cadence.field, cadence.filt,
                            cadence.seed)
    exp = np.zeros(cadence.ref_epochs + len(later), EXPOSURES_DTYPE)
    exp["obsmjd"] = np.concatenate([ms.exposures["obsmjd"][: cadence.ref_epochs],
                                    [e.mjd for e in later]])
    rec, table = period_recovery(MatchSet(ms.attrs, exp, ms.sources, ms.sourcedata),
                                 n_per_type=150)
    assert rec.n_epochs == 45 and rec.baseline_days > 50
    assert rec.overall >= 0.9
    for kind in ("sinusoid", "rrlyrae", "contact"):
        assert rec.recovered[kind] >= 0.9, kind
    assert rec.recovered["detached"] >= 0.2
    assert len(table) == 600 and (table["amp"] >= 0.1).all()
