"""A full disk on the products path (issue 19, faults).

The product writer let ``OSError: [Errno 28] No space left on device`` through without the
product's name and left its partial temporary file (``.NAME.tmpPID``) on the full disk. It
must raise :class:`~zsds.io.fitsio.ProductWriteError` naming the product and saying the disk
is full, leave nothing behind and keep the previous version of the product; the night's jobs
end ``failed``, the raw files are untouched, and once there is space a rerun completes.

The night runs on a real 1.2 MB tmpfs mounted on ``HOME/products`` where the system allows it
(root in a container that permits ``mount``); the second test always simulates the full disk
at the product writer (:func:`zsds.io.fitsio.atomic_write`, which every FITS product and log
goes through), so both paths are exercised wherever the suite runs.
"""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from zsds.io import fitsio
from zsds.io.fitsio import ProductWriteError, stale_temporaries, write_image
from zsds.reliability.scenarios import disk_full


def test_a_full_disk_names_the_product_and_leaves_nothing(tmp_path: Path, monkeypatch):
    path = tmp_path / "products" / "sci" / "x_sciimg.fits"
    write_image(path, np.ones((8, 8), np.float32))  # the previous version

    def full(self, fileobj, **_kw):  # writes part of the file, then the disk is full
        Path(fileobj).write_bytes(b"SIMPLE  =" + b" " * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fits.HDUList, "writeto", full)
    with pytest.raises(ProductWriteError) as info:
        write_image(path, np.zeros((8, 8), np.float32))
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert str(path) in str(info.value) and "is full" in str(info.value)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no partial file
    monkeypatch.undo()
    assert fits.getdata(path).sum() == 64  # the previous version is intact


def test_stale_temporaries_are_those_of_dead_writers(tmp_path: Path):
    import os
    import subprocess
    import sys

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)
    names = [f".a.fits.tmp{dead}", f".b.fits.tmp{os.getpid()}", f".1.avro.{dead}.ab12.tmp",
             "c.fits", ".hidden"]
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    assert [p.name for p in stale_temporaries(tmp_path)] == [f".1.avro.{dead}.ab12.tmp",
                                                             f".a.fits.tmp{dead}"]
    assert fitsio.remove_stale_temporaries(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[1:2] + names[3:])


def _check(r) -> None:
    f = r.facts
    assert f["errors"] > 0 and f["failed_jobs"] > 0, f
    assert "cannot write product" in f["first_error"] and "is full" in f["first_error"], f
    assert "products" in f["first_error"]
    assert f["temporaries_left"] == 0 and f["raw_untouched"], f
    assert "running" not in f["jobs_while_full"]
    assert f["rerun_errors"] == 0 and set(f["jobs_after_rerun"]) == {"done"}, f
    assert r.integrity.ok, r.integrity.details
    assert r.ok, r.outcome


def test_night_on_a_full_products_disk(home):
    r = disk_full(home)
    if r.facts["simulated"]:
        pytest.skip("cannot mount a tmpfs here (the next test simulates the full disk)")
    _check(r)


def test_night_on_a_simulated_full_disk(home):
    r = disk_full(home, mount=False)
    assert r.facts["simulated"]
    _check(r)
