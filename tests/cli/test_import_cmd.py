"""``zsds import`` from the command line, and the archive serving what it imported.

The real IPAC sciimg and mskimg (``real_images``) are imported whole; the reference is made
from a cut of the same real quadrant (``tests/ingest/ipac_files.py``: no real IPAC refimg is at
hand).
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from click.testing import CliRunner
from fastapi.testclient import TestClient

from tests.ingest.ipac_files import PID, REF_STEM, STEM, make_reference
from zsds.cli.main import cli
from zsds.core.home import Home

SEARCH = "/ibe/search/ztf/products"
DATA = "/ibe/data/ztf/products"


@pytest.fixture(scope="module")
def imported(real_images: Path, tmp_path_factory) -> tuple[Home, Path]:
    src = tmp_path_factory.mktemp("irsa")
    for suffix in ("sciimg", "mskimg"):
        shutil.copy(real_images / f"{STEM}_{suffix}.fits", src)
    make_reference(real_images, src, 1000, 1000, 200)
    home = Home(tmp_path_factory.mktemp("h") / "home")
    run = CliRunner().invoke(cli, ["import", "--home", str(home.root), str(src)])
    assert run.exit_code == 0, run.output
    assert run.output.splitlines()[-1] == "import: 5 imported"
    return home, src


def test_refused_files_exit_1_naming_file_and_reason(imported, tmp_path: Path):
    home, src = imported
    bad = tmp_path / f"{STEM}_psfcat.fits"
    shutil.copy(src / f"{STEM}_mskimg.fits", bad)
    (tmp_path / "readme.txt").write_text("x")
    run = CliRunner().invoke(cli, ["import", "--home", str(home.root), str(tmp_path),
                                   str(src / f"{STEM}_sciimg.fits")])
    assert run.exit_code == 1
    out = run.output
    assert (f"quarantined: {bad.name}: named as an IPAC psfcat (PSF-fit catalogue) but holds an "
            "integer image with mask-bit definitions") in out and "[mismatch]" in out
    assert "quarantined: readme.txt: not an IPAC product name" in out and "[bad_name]" in out
    assert f"duplicate: {STEM}_sciimg.fits: already imported" in out
    assert "import: 1 duplicate, 2 quarantined" in out
    assert "Error: import: 2 file(s) refused" in out
    assert (home.quarantine / f"{bad.name}.reason.json").exists()


def test_missing_path_is_a_usage_error(imported, tmp_path: Path):
    home, _ = imported
    run = CliRunner().invoke(cli, ["import", "--home", str(home.root), str(tmp_path / "nope")])
    assert run.exit_code == 2 and "does not exist" in run.output


def test_archive_serves_imported_products(imported):
    """IBE finds the imported science image (real IPAC file) and reference by position and
    serves their files byte for byte, the reference also in IRSA's layout (no version)."""
    from zsds.archive.app import create_app

    home, src = imported
    client = TestClient(create_app(home))
    h = fits.getheader(src / f"{STEM}_sciimg.fits")
    ra, dec = 57.99740327150, 35.74628707041  # CRVAL of the real image, near its centre
    cols = "pid,field,ccdid,qid,filtercode,obsjd,seeing,maglimit,infobits"
    resp = client.get(f"{SEARCH}/sci?POS={ra},{dec}&ct=csv&columns={cols}")
    assert resp.status_code == 200, resp.text
    sci = pd.read_csv(io.StringIO(resp.text))
    assert list(sci.pid) == [PID]
    row = sci.iloc[0]
    assert (row.field, row.ccdid, row.qid, row.filtercode) == (655, 13, 3, "zr")
    assert row.obsjd == pytest.approx(h["OBSJD"]) and row.seeing == pytest.approx(1.241 * 1.012)
    assert row.maglimit == pytest.approx(h["MAGLIM"]) and row.infobits == 0
    body = client.get(f"{DATA}/sci/2020/0924/431759/{STEM}_sciimg.fits")
    assert body.status_code == 200
    assert body.content == (src / f"{STEM}_sciimg.fits").read_bytes()
    ref_h = fits.getheader(src / f"{REF_STEM}_refimg.fits")
    rra, rdec = WCS(ref_h).all_pix2world([[100, 100]], 0)[0]
    resp = client.get(f"{SEARCH}/ref?POS={rra},{rdec}&ct=csv")
    ref = pd.read_csv(io.StringIO(resp.text))
    assert len(ref) == 1 and ref.iloc[0].field == 655
    irsa = f"{DATA}/ref/000/field000655/zr/ccd13/q3/{REF_STEM}_refimg.fits"
    body = client.get(irsa)
    assert body.status_code == 200
    assert body.content == (src / f"{REF_STEM}_refimg.fits").read_bytes()
