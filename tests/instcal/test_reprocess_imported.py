"""``zsds calibrate`` on an imported real IPAC sciimg with no reference catalogue: zsds's masks,
PSF and catalogs are derived again, IPAC's photometric calibration is kept (INFOBITS ZP_KEPT,
said in the log), never -999. The image is a 320 x 320 cut of the real quadrant (real pixels,
mask and header; only the size differs from IRSA's file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from click.testing import CliRunner
from sqlalchemy import select

from tests.ingest.ipac_files import NIGHT, PID, STEM, crop_real
from zsds.cli.main import cli
from zsds.core.home import Home
from zsds.core.masks import MaskBit
from zsds.db import QuadrantProduct, connect, init_db, session
from zsds.instcal.reprocess import STATIC_BITS
from zsds.instcal.stage import InfoBits, input_zero_point

SCI_DIR = "products/sci/2020/0924/431759"


@pytest.fixture(scope="module")
def calibrated(real_images: Path, tmp_path_factory) -> tuple[Home, Path, Path]:
    src = tmp_path_factory.mktemp("irsa")
    sci, msk = crop_real(real_images, src, 1300, 1300, 320)
    home = Home(tmp_path_factory.mktemp("home") / "home")
    runner = CliRunner()
    assert runner.invoke(cli, ["import", "--home", str(home.root), str(src)]).exit_code == 0
    run = runner.invoke(cli, ["calibrate", "--home", str(home.root), "--night", NIGHT])
    assert run.exit_code == 0, run.output
    assert "1 quadrants calibrated (1 with INFOBITS set), 0 failed" in run.output
    return home, sci, msk


def test_ipac_calibration_kept(calibrated):
    home, sci, _ = calibrated
    ipac = fits.getheader(sci)
    h = fits.getheader(home.path(f"{SCI_DIR}/{STEM}_sciimg.fits"))
    for key in ("MAGZP", "MAGZPUNC", "MAGZPRMS", "CLRCOEFF", "NMATCHES", "PCOLOR", "APCOR4"):
        assert h[key] == ipac[key], key  # never -999 over IPAC's values
    assert h["INFOBITS"] & InfoBits.ZP_KEPT and not h["INFOBITS"] & InfoBits.PHOTCAL_FAILED
    assert h["ZPSOURCE"] == "input"
    assert (h["INFOIPAC"], h["SEEIPAC"]) == (ipac["INFOBITS"], ipac["SEEING"])
    assert "BIT21" not in h  # IPAC's INFOBITS table is not zsds's
    assert h["CTYPE1"] == "RA---TPV" and h["PV1_4"] == ipac["PV1_4"]  # IPAC's astrometry
    np.testing.assert_array_equal(fits.getdata(home.path(f"{SCI_DIR}/{STEM}_sciimg.fits")),
                                  np.nan_to_num(fits.getdata(sci)))
    log = home.path(f"{SCI_DIR}/{STEM}_sciimlog.txt").read_text()
    assert "no PS1 calibrators" in log and "kept the input's calibration, MAGZP 26.2851" in log
    qa = dict(line[3:].split(" = ") for line in log.splitlines() if line.startswith("qa "))
    # zsds's SEEING is its PSF's FWHM before pixelisation, in arcsec; the FWHM as recorded
    # by the detector is what IPAC's SEEING (pixels) measures.
    assert h["SEEING"] == pytest.approx(float(qa["fwhm_px"]) * 1.012, abs=1e-3)
    assert float(qa["fwhm_eff_px"]) == pytest.approx(ipac["SEEING"], rel=0.15)
    engine = connect(home.db_url)
    init_db(engine)
    with session(engine) as s:
        rows = {r.kind: r for r in s.scalars(select(QuadrantProduct))}
    assert set(rows) >= {"sciimg", "mskimg", "psfcat", "sexcat", "psf", "psfcent", "log"}
    assert rows["sciimg"].pid == PID and rows["sciimg"].magzp == pytest.approx(26.285139)
    assert rows["sciimg"].infobits == h["INFOBITS"]


def test_catalogs_and_masks_derived_again(calibrated):
    home, _, msk = calibrated
    path = home.path(f"{SCI_DIR}/{STEM}_psfcat.fits")
    cat = Table.read(path)
    assert len(cat) > 100 and fits.getheader(path)["MAGZP"] == pytest.approx(26.285139)
    good = cat["flux"] > 0
    expect = 26.285139 - 2.5 * np.log10(np.asarray(cat["flux"][good]))
    np.testing.assert_allclose(cat["mag"][good], expect, atol=1e-6)  # calibrated, not NaN
    new = fits.getdata(home.path(f"{SCI_DIR}/{STEM}_mskimg.fits")).astype(np.int64)
    old = fits.getdata(msk).astype(np.int64)
    np.testing.assert_array_equal(new & STATIC_BITS, old & STATIC_BITS)  # IPAC's static bits
    assert not (new & (MaskBit.SOURCE | MaskBit.PSF_SOURCE)).any()  # IPAC's catalogues' bits
    assert home.path(f"{SCI_DIR}/{STEM}_sciimgdao.psf").exists()


def test_reimporting_the_original_is_a_duplicate(calibrated):
    home, sci, msk = calibrated
    run = CliRunner().invoke(cli, ["import", "--home", str(home.root), str(sci), str(msk)])
    assert run.exit_code == 0 and "import: 2 duplicate" in run.output, run.output


def test_input_zero_point_rules():
    h = fits.Header({"MAGZP": 26.2, "MAGZPUNC": 1e-5, "CLRCOEFF": 0.08, "NMATCHES": 900,
                     "PCOLOR": "g - R"})
    kept = input_zero_point(h, "no PS1 calibrators")
    assert kept.ok and (kept.magzp, kept.nmatches, kept.pcolor) == (26.2, 900, "g - R")
    assert np.isnan(kept.zpmed) and kept.message.startswith("no PS1 calibrators: kept")
    for bad in (-999.0, "26.2", 99.0):
        h["MAGZP"] = bad
        assert input_zero_point(h, "x") is None
    del h["MAGZP"]
    assert input_zero_point(h, "x") is None
