"""Configuration is provenance (issue 21), end to end on one 256 px CCD: every product of
the calibration steps carries ``ZSDSVER`` and ``CFGHASH``, ``zsds config show --hash`` prints
the configuration that made it, and a non-default configuration (``--config``, or the
executive's) is honoured and recorded under its own hash."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest
from astropy.io import fits
from click.testing import CliRunner

from zsds import __version__
from zsds.calib.build import build_calibrations
from zsds.cli.main import cli
from zsds.config import PipelineConfig
from zsds.core.home import Home
from zsds.db import connect, init_db
from zsds.ingest import ingest_incoming
from zsds.instcal.run import calibrate_night
from zsds.sim.camera import SimConfig
from zsds.sim.run import simulate_calib, simulate_night

NIGHT = "2026-11-20"
DEFAULT_HASH = PipelineConfig().config_hash()


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Home, dict[str, Path]]:
    """A night of one 256 px CCD (5 biases, 3 dome flats, 1 science exposure) ingested, its
    calibrations built and quadrant 1 calibrated, all with the default configuration; the
    quadrant's products."""
    home = Home(tmp_path_factory.mktemp("config") / "home").ensure()
    simulate_calib(home, NIGHT, quad_size=256, ccds=[1], n_bias=5, n_flat=3, filters=("r",))
    simulate_night(home, NIGHT, 1, ccds=[1], filters=("r",),
                   config=SimConfig(quad_size=256, asteroids=False))
    engine = connect(home.db_url)
    init_db(engine)
    assert all(r.ok for r in ingest_incoming(home, engine))
    build_calibrations(home, engine, NIGHT)
    out = calibrate_night(home, engine, NIGHT, quad=1)
    assert [o.message for o in out if not o.ok] == []
    engine.dispose()
    return home, out[0].products


def _copy(home: Home, dest: Path) -> Home:
    shutil.copytree(home.root, dest)
    return Home(dest).ensure()


def _show(*args: str):
    return CliRunner().invoke(cli, ["config", "show", *args])


def _nrows(path: Path) -> int:
    with fits.open(path) as h:
        return len(h[1].data)


def test_every_product_carries_version_and_config_hash(calibrated):
    home, products = calibrated
    fits_products = {k: p for k, p in products.items() if k != "log"}
    assert {"sciimg", "mskimg", "psfcat", "sexcat", "psf", "psfcent"} <= set(fits_products)
    cal = sorted((home.root / "products").rglob("*_c01_*bias*.fits")) + sorted(
        (home.root / "products").rglob("*_c01_*hifreqflat*.fits"))
    assert len(cal) == 4 * 3 + 4 * 3  # bias, biasunc, biascmask; flat, flatunc, flatmask
    for path in [*fits_products.values(), *cal]:
        hdr = fits.getheader(path)
        assert hdr["ZSDSVER"] == __version__, path.name
        assert hdr["CFGHASH"] == DEFAULT_HASH, path.name


def test_config_show_hash_prints_the_config_that_made_a_product(calibrated):
    home, products = calibrated
    h = fits.getheader(products["sciimg"])["CFGHASH"]
    res = _show("--home", str(home.root), "--hash", h)
    assert res.exit_code == 0, res.output
    assert f"# config hash: {h}" in res.stdout
    assert PipelineConfig.from_dict(tomllib.loads(res.stdout)) == PipelineConfig()


def test_config_show_unknown_hash_exits_1(calibrated):
    home, _ = calibrated
    res = _show("--home", str(home.root), "--hash", "0123456789abcdef")
    assert res.exit_code == 1
    assert "no configuration with hash '0123456789abcdef'" in res.output
    assert "Traceback" not in res.output


def test_config_show_without_hash(tmp_path: Path):
    res = _show()
    assert res.exit_code == 0, res.output
    assert PipelineConfig.from_dict(tomllib.loads(res.stdout)) == PipelineConfig()
    assert f"# config hash: {DEFAULT_HASH}" in res.stdout
    path = tmp_path / "mine.toml"
    path.write_text("[diffim.cuts]\nmin_snr = 6\n")
    res = _show("--config", str(path))
    assert res.exit_code == 0, res.output
    cfg = PipelineConfig.from_toml(path)
    assert PipelineConfig.from_dict(tomllib.loads(res.stdout)) == cfg
    assert f"# config hash: {cfg.config_hash()}" in res.stdout
    assert cfg.config_hash() != DEFAULT_HASH
    bad = tmp_path / "bad.toml"
    bad.write_text("[diffim.cuts]\nmin_snrr = 6\n")
    res = _show("--config", str(bad))
    assert res.exit_code == 1
    assert "unknown configuration key 'diffim.cuts.min_snrr'" in res.output
    assert str(bad) in res.output.replace("\n", "")


def test_calibrate_honours_and_records_a_non_default_config(calibrated, tmp_path: Path):
    home0, products0 = calibrated
    home = _copy(home0, tmp_path / "home")
    path = tmp_path / "strict.toml"
    path.write_text("[instcal.detect]\nthresh = 5.0\n")
    custom = PipelineConfig.from_toml(path)
    assert custom.config_hash() != DEFAULT_HASH
    res = CliRunner().invoke(cli, ["calibrate", "--home", str(home.root), "--night", NIGHT,
                                   "--quad", "1", "--config", str(path)])
    assert res.exit_code == 0, res.output
    sexcat = home.root / products0["sexcat"].relative_to(home0.root)
    assert fits.getheader(sexcat)["CFGHASH"] == custom.config_hash()
    # Honoured: a 5-sigma extraction threshold finds fewer sources than the default 1.5.
    assert 0 < _nrows(sexcat) < _nrows(products0["sexcat"])
    res = _show("--home", str(home.root), "--hash", custom.config_hash())
    assert res.exit_code == 0, res.output
    assert PipelineConfig.from_dict(tomllib.loads(res.stdout)) == custom
    # The default configuration is still there for the products it made.
    assert _show("--home", str(home.root), "--hash", DEFAULT_HASH).exit_code == 0


def test_executive_task_runs_with_the_pipeline_config(calibrated, tmp_path: Path):
    """The executive's task gets :attr:`ExecConfig.pipeline` as ``config``: master frames
    built under it carry its hash, and its settings hold (3 dome flats < ``min_flat``)."""
    from zsds.executive import tasks

    home = _copy(calibrated[0], tmp_path / "home")
    d = PipelineConfig()
    custom = PipelineConfig.from_dict({"calib": {"min_flat": 4, "bias": {"clip_sigma": 3.5}}})
    assert custom.calib.min_flat == 4 and custom.calib.bias.clip_sigma == 3.5
    assert custom.split == d.split
    out = tasks.task_calibrations(str(home.root), home.db_url, NIGHT, 1, config=custom)
    assert out["products"] == 4  # the four master biases; no flat from 3 frames
    bias = sorted((home.root / "products").rglob("*_c01_*_bias.fits"))
    assert len(bias) == 4
    assert {fits.getheader(p)["CFGHASH"] for p in bias} == {custom.config_hash()}
    res = _show("--home", str(home.root), "--hash", custom.config_hash())
    assert res.exit_code == 0 and PipelineConfig.from_dict(tomllib.loads(res.stdout)) == custom
