"""The moving-object runner on a real database: a simulated 3-night window stored as
difference-image candidates, linked by ``zsds moving link``, reported by ``zsds moving report``
(SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from zsds.cli.main import cli
from zsds.core.home import Home
from zsds.core.naming import nid_of, night_of_mjd
from zsds.db import connect, init_db, session
from zsds.db.schema import Candidate, DiffImageRecord, SSTrack, SSTrackMember
from zsds.moving.evaluate import findable
from zsds.moving.report import parse_mpc80, validate_ades
from zsds.moving.run import LinkRunConfig, link_window, track_name
from zsds.moving.simulate import simulate_window
from zsds.sim.run import is_known

FWHM_PX = 4.0  # large enough that every simulated sigma inverts to S/N >= 5


@pytest.fixture(scope="module")
def window() -> tuple[pd.DataFrame, pd.DataFrame]:
    dets, _orbits, exposures = simulate_window(seed=3, density_scale=0.3, n_fields=1)
    return dets, exposures


def _store(engine, dets: pd.DataFrame, exposures: pd.DataFrame) -> None:
    """The window as the pipeline would have stored it: one difference image per exposure,
    one positive candidate per detection; known asteroids tagged as in real time."""
    nid = {e: nid_of(night_of_mjd(m)) for e, m in zip(exposures.expid, exposures.mjd,
                                                       strict=True)}
    # S/N such that the runner's astrometric sigma equals the simulated one.
    s = np.sqrt(np.maximum(dets["sigma"].to_numpy() ** 2 - 0.07**2, 1e-4))
    snr = FWHM_PX * 1.012 / (2.355 * s)
    known = is_known(dets["truth"].astype(str).to_numpy(), 0.5) & (dets["truth"] != "")
    with session(engine) as ses:
        for e in exposures.itertuples():
            ses.add(DiffImageRecord(
                pid=int(e.expid) * 100 + 1, expid=int(e.expid), nid=nid[e.expid],
                field=int(e.field), ccdid=1, qid=1, rcid=0, fid=int(e.fid), programid=1,
                jd=float(e.mjd) + 2400000.5, rfid=1, ra=float(e.ra), dec=float(e.dec),
                radius=4.0, diffmaglim=20.5, magzp=26.0, relpath="x", ncand=0))
        ses.flush()
        for k, d in enumerate(dets.itertuples()):
            ss = str(d.truth) if known[k] else None
            ses.add(Candidate(
                candid=int(d.det_id), pid=int(d.expid) * 100 + 1, object_id=None,
                jd=float(d.mjd) + 2400000.5, nid=nid[d.expid], fid=int(d.fid),
                field=int(d.field), rcid=0, programid=1, ra=float(d.ra), dec=float(d.dec),
                isdiffpos="t", magpsf=float(d.mag), sigmapsf=float(1.0857 / snr[k]),
                scorr=float(snr[k]), rb=0.9, passed=True, ssnamenr=ss,
                record={"fwhm": FWHM_PX, "ssdistnr": 0.3 if ss else -999.0,
                        "exptime": 30.0}))


@pytest.fixture(params=["sqlite", "postgresql"])
def home(request, tmp_path, window) -> Iterator[tuple[Home, object]]:
    if request.param == "sqlite":
        h = Home.resolve(tmp_path / "home").ensure()
        engine = connect(h.db_url)
        init_db(engine)
        yield h, engine
        engine.dispose()
        return
    from tests.db.conftest import pg_engine

    gen = pg_engine()
    engine = next(gen)
    init_db(engine)
    yield Home.resolve(tmp_path / "home").ensure(), engine
    next(gen, None)


def test_link_window_finds_the_findable_and_is_idempotent(home, window) -> None:
    h, engine = home
    dets, exposures = window
    _store(engine, dets, exposures)
    end = night_of_mjd(float(exposures.mjd.max()))
    out = link_window(h, engine, end, LinkRunConfig())
    assert out.ndet > 0.95 * len(dets)  # S/N >= 5 drops the faintest few
    with session(engine) as s:
        mem = pd.DataFrame(s.execute(select(SSTrack.trksub, SSTrack.designation,
                                            SSTrackMember.candid)
                                     .join(SSTrackMember)).all(),
                           columns=["trksub", "designation", "candid"])
    truth = dets.set_index("det_id")["truth"]
    mem["truth"] = truth.reindex(mem["candid"]).to_numpy()
    per = mem.groupby("trksub")["truth"].agg(lambda t: t.nunique() == 1 and t.iloc[0] != "")
    purity = per.mean()
    found = set(mem.groupby("trksub")["truth"].first()[per])
    want = set(findable(dets))
    completeness = len(found & want) / len(want)
    print(f"{len(want)} findable, {out.ntracks} tracks: completeness {completeness:.3f}, "
          f"purity {purity:.3f}, {out.nknown} known")
    assert len(want) >= 50
    assert completeness >= 0.9 and purity >= 0.95
    # Known objects: tracks of tagged asteroids carry their designation.
    known = mem.dropna(subset=["designation"]).groupby("trksub").first()
    assert len(known) > 0 and (known["designation"] == known["truth"]).all()
    # Orbits were fitted (main-belt a) and names are deterministic.
    with session(engine) as s:
        a = s.execute(select(SSTrack.a).where(SSTrack.orbit_ok)).scalars().all()
        assert min(s.execute(select(SSTrack.nnights)).scalars()) >= 3  # Palomar nights
        names = sorted(s.execute(select(SSTrack.trksub)).scalars().all())
    assert len(a) == out.ntracks and 1.5 < float(np.median(a)) < 4.0
    assert names[0] == track_name(nid_of(end), 0)
    link_window(h, engine, end, LinkRunConfig())
    with session(engine) as s:
        assert sorted(s.execute(select(SSTrack.trksub)).scalars().all()) == names
        assert s.execute(select(func.count()).select_from(SSTrackMember)).scalar() == len(mem)


def test_cli_link_and_reports(tmp_path, window) -> None:
    h = Home.resolve(tmp_path / "home").ensure()
    engine = connect(h.db_url)
    init_db(engine)
    dets, exposures = window
    _store(engine, dets, exposures)
    end = f"{night_of_mjd(float(exposures.mjd.max())):%Y-%m-%d}"
    r = CliRunner().invoke(cli, ["moving", "link", "--home", str(h.root), "--end-night", end],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "tracks" in r.output
    r = CliRunner().invoke(cli, ["moving", "report", "--home", str(h.root), "--end-night",
                                 end], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    folder = h.products / "moving" / end.replace("-", "")
    mpc = (folder / f"ztf_{end.replace('-', '')}_I41_obs.mpc80").read_text().splitlines()
    obs = [line for line in mpc if len(line) == 80 and line.endswith("I41")]
    parsed = parse_mpc80(obs)
    assert len(parsed) > 100 and (parsed["stn"] == "I41").all()
    # New tracks are reported under their trkSub with one discovery asterisk each.
    new = parsed[parsed["trksub"].fillna("").str.startswith("z")]
    assert len(new) and new.groupby("trksub")["discovery"].sum().eq(1).all()
    ok, msg = validate_ades(folder / f"ztf_{end.replace('-', '')}_I41_obs.psv")
    assert ok, msg
    r = CliRunner().invoke(cli, ["moving", "tracks", "--home", str(h.root)])
    assert r.exit_code == 0 and "tracks" in r.output and "ok" in r.output


def test_cli_eval_linking_prints_the_bars() -> None:
    r = CliRunner().invoke(cli, ["eval", "linking", "--density", "0.2", "--no-orbits"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    import re

    m = re.search(r"completeness ([\d.]+) %, purity ([\d.]+) %", r.output.replace("\n", " "))
    assert m and float(m.group(1)) >= 90.0 and float(m.group(2)) >= 95.0, r.output
