"""Shared fixtures: small simulated homes, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only shared reference data (../shared relative to the project root)."""
    if not SHARED.exists():
        pytest.skip("../shared is not available")
    return SHARED
