"""The pipeline configuration (issue 21): TOML round trip, a stable hash, strict keys, the
``configs`` table and the CFGHASH keyword the writers stamp."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from sqlalchemy import func, select

from tests.db.conftest import engine  # noqa: F401  (SQLite and PostgreSQL)
from zsds import __version__
from zsds.config import ConfigError, PipelineConfig, record_config, stored_config
from zsds.db import init_db, session
from zsds.db.schema import ConfigRecord
from zsds.instcal.stage import InstCalConfig
from zsds.io.fitsio import config_provenance, stamp_header, write_hdul, write_image


def _custom() -> PipelineConfig:
    """A configuration that differs from the defaults in settings of several types."""
    d = PipelineConfig()
    r = dataclasses.replace
    return r(
        d,
        instcal=r(d.instcal, mask=r(d.instcal.mask, cosmic_rays=False, cr_method="lacosmic"),
                  detect=r(d.instcal.detect, thresh=2.5, ap_diameters=(3.0, 5.0))),
        diffim=r(d.diffim, cuts=r(d.diffim.cuts, min_snr=6.0, magdiff_range=(-0.5, 1.0))),
        refs=r(d.refs, shape=(512, 512)),
        streaks=r(d.streaks, method="bank"),
        lightcurves=r(d.lightcurves, metrics=r(d.lightcurves.metrics, max_period=30.0)),
    )


@pytest.mark.parametrize("make", [PipelineConfig, _custom], ids=["defaults", "custom"])
def test_toml_round_trip(make, tmp_path: Path):
    cfg = make()
    path = tmp_path / "zsds.toml"
    path.write_text(cfg.to_toml())
    back = PipelineConfig.from_toml(path)
    assert back == cfg
    assert back.config_hash() == cfg.config_hash()
    assert back.to_toml() == cfg.to_toml()
    assert f"# config hash: {cfg.config_hash()}" in path.read_text()


def test_hash_is_the_sha256_of_the_canonical_json():
    cfg = PipelineConfig()
    text = cfg.to_json()
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    h = cfg.config_hash()
    assert h == hashlib.sha256(text.encode()).hexdigest()[:16] and len(h) == 16
    assert h == PipelineConfig().config_hash()  # stable
    assert __version__ not in text  # the version is recorded apart (ZSDSVER)
    assert _custom().config_hash() != h
    # One setting changed anywhere changes it; the same value given as int or float does not.
    one = dataclasses.replace(cfg, moving=dataclasses.replace(cfg.moving, min_rb=0.3))
    assert one.config_hash() != h
    as_int = dataclasses.replace(cfg, diffim=dataclasses.replace(
        cfg.diffim, cuts=dataclasses.replace(cfg.diffim.cuts, min_snr=5)))
    assert as_int.config_hash() == h


def test_partial_file_keeps_the_defaults(tmp_path: Path):
    path = tmp_path / "night.toml"
    path.write_text("# only what differs\n[instcal.mask]\ncosmic_rays = false\n\n"
                    "[diffim.cuts]\nmin_snr = 6\nmagdiff_range = [-0.5, 1]\n")
    cfg = PipelineConfig.from_toml(path)
    d = PipelineConfig()
    assert cfg.instcal.mask.cosmic_rays is False
    assert cfg.diffim.cuts.min_snr == 6.0 and isinstance(cfg.diffim.cuts.min_snr, float)
    assert cfg.diffim.cuts.magdiff_range == (-0.5, 1.0)
    assert cfg.instcal.mask.cr_method == d.instcal.mask.cr_method
    assert (cfg.split, cfg.calib, cfg.refs, cfg.streaks) == (d.split, d.calib, d.refs, d.streaks)
    expected = dataclasses.replace(
        d, instcal=dataclasses.replace(d.instcal, mask=dataclasses.replace(
            d.instcal.mask, cosmic_rays=False)),
        diffim=dataclasses.replace(d.diffim, cuts=dataclasses.replace(
            d.diffim.cuts, min_snr=6.0, magdiff_range=(-0.5, 1.0))))
    assert cfg.config_hash() == expected.config_hash()


@pytest.mark.parametrize(("text", "key", "hint"), [
    ("[instcal.mask]\ncosmic_ray = false\n", "instcal.mask.cosmic_ray",
     "did you mean 'instcal.mask.cosmic_rays'"),
    ("[instcall]\nx = 1\n", "instcall", "did you mean 'instcal'"),
    ("verbose = true\n", "verbose", "the top level has: split"),
])
def test_unknown_key_is_an_error_naming_key_and_file(text, key, hint, tmp_path: Path):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        PipelineConfig.from_toml(path)
    msg = str(err.value)
    assert str(path) in msg and f"unknown configuration key '{key}'" in msg and hint in msg


@pytest.mark.parametrize(("text", "key"), [
    ('[diffim.cuts]\nmin_snr = "high"\n', "diffim.cuts.min_snr"),
    ("[diffim.cuts]\nmagdiff_range = [1.0]\n", "diffim.cuts.magdiff_range"),
    ('[streaks]\nmethod = "hough"\n', "streaks.method"),
    ("[calib]\nmin_bias = 2.5\n", "calib.min_bias"),
    ("[instcal]\nmask = 3\n", "instcal.mask"),
    ("[instcal.mask]\ncosmic_rays = 1\n", "instcal.mask.cosmic_rays"),
])
def test_wrong_type_is_an_error_naming_key_and_file(text, key, tmp_path: Path):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=key) as err:
        PipelineConfig.from_toml(path)
    assert str(path) in str(err.value)


def test_invalid_toml_names_the_file(tmp_path: Path):
    path = tmp_path / "broken.toml"
    path.write_text("[instcal\n")
    with pytest.raises(ConfigError, match="not a valid TOML file") as err:
        PipelineConfig.from_toml(path)
    assert str(path) in str(err.value)


def test_of_wraps_a_stage_config():
    assert PipelineConfig.of(None) == PipelineConfig()
    cfg = _custom()
    assert PipelineConfig.of(cfg) is cfg
    ic = InstCalConfig(mask=dataclasses.replace(InstCalConfig().mask, cosmic_rays=False))
    wrapped = PipelineConfig.of(ic)
    assert wrapped.instcal is ic and wrapped.diffim == PipelineConfig().diffim
    assert wrapped.config_hash() != PipelineConfig().config_hash()
    with pytest.raises(TypeError, match="not a pipeline or stage configuration"):
        PipelineConfig.of(object())


def test_record_config_is_idempotent(engine):  # noqa: F811
    init_db(engine)
    cfg = _custom()
    h = record_config(engine, cfg)
    assert h == cfg.config_hash()
    assert record_config(engine, cfg) == h
    assert record_config(engine, PipelineConfig()) == PipelineConfig().config_hash()
    with session(engine) as s:
        assert s.scalar(select(func.count()).select_from(ConfigRecord)) == 2
        row = s.get(ConfigRecord, h)
        assert row.json == cfg.to_json() and row.created_at is not None
    assert stored_config(engine, h) == cfg.to_dict()
    assert stored_config(engine, f" {h.upper()} ") == cfg.to_dict()
    assert PipelineConfig.from_dict(stored_config(engine, h)) == cfg
    assert stored_config(engine, "0" * 16) is None


def test_writers_stamp_the_config_hash(tmp_path: Path):
    inherited = fits.Header({"CFGHASH": "feedfeedfeedfeed", "EXPID": 1})
    # Outside a pipeline step: the version, and no stale hash copied from an input.
    assert "CFGHASH" not in stamp_header(inherited)
    h = stamp_header(None, "0123456789abcdef")
    assert list(h) == ["ZSDSVER", "CFGHASH"] and h["CFGHASH"] == "0123456789abcdef"
    with config_provenance("aaaaaaaaaaaaaaaa"):
        assert stamp_header(inherited)["CFGHASH"] == "aaaaaaaaaaaaaaaa"
        assert stamp_header(None, "bbbbbbbbbbbbbbbb")["CFGHASH"] == "bbbbbbbbbbbbbbbb"
        write_image(tmp_path / "img.fits", np.zeros((2, 2), np.float32), inherited)
        write_hdul(fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros(3))]),
                   tmp_path / "psf.fits")
    assert stamp_header(None).get("CFGHASH") is None  # the block ended
    for name in ("img.fits", "psf.fits"):
        hdr = fits.getheader(tmp_path / name)
        assert hdr["ZSDSVER"] == __version__ and hdr["CFGHASH"] == "aaaaaaaaaaaaaaaa"
    # A file written outside any step (the simulator's raw files) is left as given.
    write_hdul(fits.HDUList([fits.PrimaryHDU()]), tmp_path / "raw.fits")
    assert "ZSDSVER" not in fits.getheader(tmp_path / "raw.fits")


def test_toml_output_is_valid_toml_with_every_stage():
    data = tomllib.loads(PipelineConfig().to_toml())
    assert set(data) == {f.name for f in dataclasses.fields(PipelineConfig)}
