"""ZOGY through zsds's subtraction stage on the real GOTO-North pair finds every source that
is present only in the new image (found independently, by ``sep``)."""

from __future__ import annotations

from pathlib import Path

from zsds.diffim.realcheck import check_goto_pair


def test_goto_pair_new_sources_all_found(real_images: Path):
    (c,) = check_goto_pair(real_images / "goto_1.fits", real_images / "goto_2.fits")
    assert c.ok, f"{c.name}: {c.value} ({c.note})"
    assert int(c.note.split(" of ")[1].split(";")[0]) >= 40  # the pair holds ~45 new sources
