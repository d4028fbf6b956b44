"""Shared fixtures: the real test data (copied under ``tests/data``, or fetched and cached)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest

#: Real samples copied into the repository (provenance: ``tests/data/README.md``).
TEST_DATA = Path(__file__).resolve().parent / "data"

ZTF_QUADRANT = "ztf_20200924431759_000655_zr_c13_o_q3"
#: The real images, by name: (package on the index, member path in it, sha256).
REAL_IMAGES = {
    f"{ZTF_QUADRANT}_sciimg.fits": (
        "ztfimg==0.19.0", f"ztfimg-0.19.0/ztfimg/data/{ZTF_QUADRANT}_sciimg.fits",
        "0884728fcf98cb81c95961987c940069b00fe496552030f7610f6d6390b4dee4"),
    f"{ZTF_QUADRANT}_mskimg.fits": (
        "ztfimg==0.19.0", f"ztfimg-0.19.0/ztfimg/data/{ZTF_QUADRANT}_mskimg.fits",
        "dd636f16779a9aaadfab035243dadbed686ebaae8ffac157a60f5e30916ba8f2"),
    "goto_1.fits": ("zogyp==1.6.3", "zogyp/test/1.fits",
                    "071a35ec65cdc529c9ba03f8e6ac2ff1ed6e1ce276b5fadbe1e106c75eca34ce"),
    "goto_2.fits": ("zogyp==1.6.3", "zogyp/test/2.fits",
                    "046efba868f862e0f8c6b3f6670bd5fed4a00fde1c0dc9d4e18a2dff16fcd795"),
}


@pytest.fixture(scope="session")
def test_data() -> Path:
    """The real samples copied under ``tests/data``."""
    return TEST_DATA


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fo:
        for block in iter(lambda: fo.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fetch_real_images(dest: Path) -> None:
    """Download the packages holding the real images and extract them into ``dest``."""
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        for spec, extra in (("ztfimg==0.19.0", ["--no-binary", ":all:"]), ("zogyp==1.6.3", [])):
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", *extra,
                            spec, "-d", str(t)], check=True)
        with tarfile.open(next(t.glob("ztfimg-0.19.0.tar.gz"))) as sdist, \
                zipfile.ZipFile(next(t.glob("zogyp-1.6.3-*.whl"))) as wheel:
            for name, (spec, member, _) in REAL_IMAGES.items():
                part = dest / f".{name}.part"
                src = (sdist.extractfile(member) if spec.startswith("ztfimg")
                       else wheel.open(member))
                with src, part.open("wb") as out:
                    shutil.copyfileobj(src, out)
                part.replace(dest / name)


@pytest.fixture(scope="session")
def real_images() -> Path:
    """Folder of the real images, fetched once from the package index and checksummed."""
    dest = Path(os.environ.get("ZSDS_REAL_DATA", Path.home() / ".cache" / "zsds-real-data"))
    dest.mkdir(parents=True, exist_ok=True)

    def ok() -> bool:
        return all((dest / n).is_file() and _sha256(dest / n) == s
                   for n, (_, _, s) in REAL_IMAGES.items())

    if not ok():
        # One download even with several xdist workers.
        with open(dest / ".fetch.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not ok():
                _fetch_real_images(dest)
    bad = [n for n, (_, _, s) in REAL_IMAGES.items() if _sha256(dest / n) != s]
    assert not bad, f"checksum mismatch in {dest}: {bad}"
    return dest
