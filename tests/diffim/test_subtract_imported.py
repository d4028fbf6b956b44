"""``zsds subtract`` between an imported real IPAC sciimg and an imported reference.

The science image is a 320 x 320 cut of the real IPAC quadrant (real pixels, real header with
its TPV WCS, real mask) with fake stars added, drawn with the PSF zsds fits to the cut. No real
IPAC reference image is at hand, so the reference is made from the same real quadrant (see
``tests/ingest/ipac_files.py``): a larger cut, convolved to a broader PSF (Gaussian sigma 1.2 px),
scaled by 2 (its MAGZP 0.75 mag higher), sky removed, named and labelled as an IPAC refimg, with
a refunc and a refcov. Its noise is the science image's, smoothed -- so only the fakes differ
between the two images, and they must come out of the subtraction. Both are imported with
``zsds import``; no zsds calibration runs: the subtraction fits the PSFs of the imported images
itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner
from scipy import ndimage
from scipy.spatial import cKDTree
from scipy.special import erf
from sqlalchemy import select

from tests.ingest.ipac_files import NIGHT, PID, crop_real, make_reference, read_real
from zsds.cli.main import cli
from zsds.core.home import Home
from zsds.db import connect, init_db, session
from zsds.db.schema import Candidate, DiffImageRecord, Reference

X0, Y0, N = 1400, 1300, 320
PAD = 24  # the reference covers the science cut with this margin (another pixel grid)


def _gaussian_stamp(dx: float, dy: float, fwhm: float, half: int = 8) -> np.ndarray:
    """A unit-flux circular Gaussian integrated over each pixel (erf differences), centred at
    (dx, dy) from the stamp's middle pixel: an independent PSF, not zsds's Moffat model."""
    s = fwhm / 2.3548 * np.sqrt(2.0)
    edges = np.arange(-half - 0.5, half + 1.0)
    px = np.diff(erf((edges - dx) / s)) / 2.0
    py = np.diff(erf((edges - dy) / s)) / 2.0
    return np.outer(py, px)


def _fakes(data: np.ndarray, mask: np.ndarray, fwhm: float, n: int, seed: int = 7
           ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` fake stars at S/N ~ 40 on empty sky (no pixel above 3 sky sigma within 10 px, no
    bad mask bit), 25 px apart; returns the image with them and their 0-based (x, y)."""
    rng = np.random.default_rng(seed)
    med = float(np.median(data))
    sky_rms = 1.4826 * float(np.median(np.abs(data - med)))
    busy = ndimage.maximum_filter((data > med + 3 * sky_rms) | ((mask & 6141) != 0), size=21)
    xy: list[tuple[float, float]] = []
    while len(xy) < n:
        x, y = rng.uniform(30, data.shape[1] - 30, 2)
        if busy[round(y), round(x)]:
            continue
        if xy and np.min(np.hypot(*(np.array(xy) - [x, y]).T)) < 25:
            continue
        xy.append((x, y))
    pos = np.array(xy)
    n_eff = 4 * np.pi * (fwhm / 2.3548) ** 2  # noise-equivalent area of a Gaussian
    flux = 40.0 * sky_rms * np.sqrt(n_eff)
    out = data.astype(np.float64).copy()
    for x, y in pos:
        ix, iy = round(x), round(y)
        out[iy - 8:iy + 9, ix - 8:ix + 9] += flux * _gaussian_stamp(x - ix, y - iy, fwhm)
    return out.astype(np.float32), pos


def test_subtract_imported_pair(real_images: Path, tmp_path: Path):
    sci, h = read_real(real_images, "sciimg")
    msk, _ = read_real(real_images, "mskimg")
    cut = sci[Y0:Y0 + N, X0:X0 + N].astype(np.float32)
    # Fakes as wide as the stars (IPAC's SEEING, 1.24 px, is the recorded FWHM).
    with_fakes, fakes = _fakes(cut, msk[Y0:Y0 + N, X0:X0 + N], float(h["SEEING"]), 10)
    src = tmp_path / "irsa"
    crop_real(real_images, src / "sci", X0, Y0, N, data=with_fakes)
    make_reference(real_images, src / "ref", X0 - PAD, Y0 - PAD, N + 2 * PAD)
    home = tmp_path / "home"
    run = CliRunner().invoke(cli, ["import", "--home", str(home), str(src)])
    assert run.exit_code == 0, run.output
    assert "5 imported" in run.output  # sciimg, mskimg, refimg, refunc, refcov

    run = CliRunner().invoke(cli, ["subtract", "--home", str(home), "--night", NIGHT])
    assert run.exit_code == 0, run.output
    assert "1 quadrants subtracted" in run.output

    engine = connect(Home(home).db_url)
    init_db(engine)
    with session(engine) as s:
        diff = s.get(DiffImageRecord, PID)
        ref = s.scalars(select(Reference)).one()
        cands = s.scalars(select(Candidate).where(Candidate.pid == PID)).all()
        pos = [c for c in cands if c.isdiffpos == "t"]
        xy = np.array([[c.record["xpos"], c.record["ypos"]] for c in pos]) - 1.0  # 0-based
        passed = np.array([c.passed for c in pos])
    assert diff is not None and diff.rfid == ref.rfid
    assert diff.magzp == float(h["MAGZP"])  # science zero point, IPAC's
    # Every fake is found and passes IPAC's packet cuts.
    d, j = cKDTree(xy).query(fakes)
    assert np.all(d < 1.5), f"fakes missed: {fakes[d >= 1.5]}"
    assert passed[j].all()
    # The real stars, in both images, subtract: any other positive event is a residual of a
    # bright or saturated star that the packet cuts remove (no other candidate passes them).
    assert passed.sum() == len(fakes)
