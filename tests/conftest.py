"""Shared fixtures: the real test data (copied under ``tests/data``, or fetched and cached)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zsds.core.realdata import ZTF_QUADRANT, fetch_real_data

#: Real samples copied into the repository (provenance: ``tests/data/README.md``).
TEST_DATA = Path(__file__).resolve().parent / "data"

__all__ = ["TEST_DATA", "ZTF_QUADRANT"]


@pytest.fixture(scope="session")
def test_data() -> Path:
    """The real samples copied under ``tests/data``."""
    return TEST_DATA


@pytest.fixture(scope="session")
def real_images() -> Path:
    """Folder of the real images, fetched once from the package index and checksummed
    (:func:`zsds.core.realdata.fetch_real_data`)."""
    return fetch_real_data()
