"""zsds's image steps on the real ZTF quadrant (fetched by ``real_images``) meet the real-data
bars of issue 18: PSF width and star count, PSF photometry against IPAC's aperture
correction and its pixel-phase dependence, cosmic rays and column defects, stars usable for
flux matching, recovery and photometry of fakes injected with the fitted PSF."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ZTF_QUADRANT
from zsds.instcal.realcheck import Check, check_real_quadrant

NAMES = [
    "PSF effective FWHM / header SEEING",
    "PSF stars used",
    "PSF mag - (aperture mag + APCOR4): median",
    "PSF mag - (aperture mag + APCOR4): robust scatter",
    "pixel phase: centre minus corner",
    "PSF-fit positions within 0.15 px of a pixel centre / uniform",
    "cosmic-ray pixels / IPAC's (bit 7)",
    "star cores (S/N > 50) flagged as cosmic rays",
    "column defects flagged away from the edges",
    "S/N > 20 stars usable for flux matching",
    "fakes recovered (S/N 10-50)",
    "fakes: PSF mag - true mag (median)",
]


@pytest.fixture(scope="module")
def checks(real_images: Path) -> dict[str, Check]:
    out = check_real_quadrant(real_images / f"{ZTF_QUADRANT}_sciimg.fits",
                              real_images / f"{ZTF_QUADRANT}_mskimg.fits")
    return {c.name: c for c in out}


def test_every_check_is_reported(checks):
    assert list(checks) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_real_quadrant_meets_the_bar(checks, name):
    c = checks[name]
    assert c.ok, f"{name}: {c.value} (bar {c.bar}) {c.note}"
