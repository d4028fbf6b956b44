"""``zsds import`` (library level): IPAC products recognised by name and content, filed in the
IRSA layout, registered like zsds's own, refused with a reason otherwise; idempotent.

The real IPAC sciimg and mskimg (``real_images``) are imported whole. The other products are
written by the tests with the real layout and keywords (``tests/ingest/ipac_files.py`` says
how and from what), from cuts of the real quadrant.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from sqlalchemy import func, select

from tests.ingest.ipac_files import (
    EXPID,
    PID,
    REF_STEM,
    STEM,
    crop_real,
    make_reference,
    write_diff_fz,
    write_psfcat,
    write_sexcat,
)
from tests.ingest.test_real_layout import NAME as RAW_NAME
from tests.ingest.test_real_layout import write_real_layout
from zsds.core.home import Home
from zsds.db import Exposure, QuadrantProduct, Quarantine, RawFile, connect, init_db, session
from zsds.db.schema import Job, Reference
from zsds.ingest.importing import expand_paths, import_file, import_paths
from zsds.ingest.ipac import ProductError, parse_product_name, recognise, seeing_arcsec
from zsds.refs.run import make_rfid

SCI_DIR = "products/sci/2020/0924/431759"
REF_DIR = "products/ref/000/field000655/zr/ccd13/q3"


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home").ensure()


@pytest.fixture
def db(home: Home):
    eng = connect(home.db_url)
    init_db(eng)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def cut(real_images: Path, tmp_path_factory) -> tuple[Path, Path]:
    """A 96 x 96 cut of the real sciimg and mskimg (real names and keywords)."""
    return crop_real(real_images, tmp_path_factory.mktemp("cut"), 1500, 1500, 96)


def _count(engine, table) -> int:
    with session(engine) as s:
        return s.scalar(select(func.count()).select_from(table))


def test_real_sciimg_and_mskimg(real_images: Path, home: Home, engine):
    """The real IPAC files, imported whole, on SQLite and PostgreSQL."""
    init_db(engine)
    sci = real_images / f"{STEM}_sciimg.fits"
    msk = real_images / f"{STEM}_mskimg.fits"
    res = import_paths(home, engine, [msk, sci])  # sciimg goes first whatever the order
    assert [(r.kind, r.status) for r in res] == [("sciimg", "imported"), ("mskimg", "imported")]
    for r, src in zip(res, (sci, msk), strict=True):
        assert r.path == home.path(f"{SCI_DIR}/{src.name}")
        assert r.path.read_bytes() == src.read_bytes() and src.exists()  # copied, not moved
    with session(engine) as s:
        exp = s.scalars(select(Exposure)).one()
        # IPAC's EXPID; OBSJD (no DATE-OBS); TELRA/TELDEC given in degrees as TELRAD/TELDECD
        assert (exp.expid, exp.nid, exp.field, exp.fid, exp.programid) == (EXPID, 1362, 655, 2, 1)
        assert exp.mjd == pytest.approx(59116.4317708) and exp.filefracday == "20200924431759"
        assert (exp.ra, exp.dec) == pytest.approx((55.0608, 33.35))
        assert exp.exptime == 30.0 and exp.airmass == pytest.approx(1.018)
        rows = {r.kind: r for r in s.scalars(select(QuadrantProduct))}
    assert set(rows) == {"sciimg", "mskimg"}
    q = rows["sciimg"]
    assert q.pid == PID == fits.getheader(sci)["DBPID"]  # zsds's pid is IPAC's
    assert (q.ccdid, q.qid, q.rcid, q.infobits) == (13, 3, 50, 0)
    assert q.seeing == pytest.approx(1.241 * 1.012)  # IPAC's SEEING is in pixels
    assert (q.magzp, q.maglim, q.clrcoeff) == pytest.approx((26.285139, 21.73, 0.079197))
    assert rows["mskimg"].magzp == q.magzp  # every product of a quadrant carries its QA
    # Again: nothing changes.
    again = import_paths(home, engine, [sci, msk])
    assert [r.status for r in again] == ["duplicate", "duplicate"]
    assert (_count(engine, QuadrantProduct), _count(engine, Exposure), _count(engine, Job)) == (
        2, 1, 2)


def test_keywords_read_as_ipac_writes_them(cut):
    h = recognise(cut[0]).header
    assert seeing_arcsec(h) == pytest.approx(1.241 * 1.012)
    h["SEEING"] = (1.5, "PSF FWHM at the image centre (arcsec)")  # zsds's own products
    assert seeing_arcsec(h) == 1.5
    name = parse_product_name(f"{REF_STEM}_refimg.fits")
    assert (name.kind, name.field, name.ccdid, name.qid, name.is_reference) == (
        "refimg", 655, 13, 3, True)


def _refused(home: Home, engine, path: Path, reason: str, words: str):
    r = import_file(home, engine, path)
    assert (r.status, r.reason) == ("quarantined", reason), r.message
    assert r.message.startswith(path.name + ": ") and words in r.message, r.message
    assert path.exists()  # the original stays
    side = json.loads(r.path.with_name(r.path.name + ".reason.json").read_text())
    assert side["reason"] == reason and side["file"] == path.name
    return r


def test_name_and_content_must_agree(cut, home: Home, db, tmp_path: Path):
    sci, msk = cut
    sci_h = fits.getheader(sci)
    bad = tmp_path / "bad"
    bad.mkdir()

    def renamed(src: Path, name: str) -> Path:
        return Path(shutil.copy(src, bad / name))

    _refused(home, db, renamed(sci, f"{STEM}_mskimg.fits"), "mismatch",
             "named as an IPAC mskimg (bit mask) but holds a float image with a photometric "
             "calibration and an exposure id")
    _refused(home, db, renamed(msk, f"{STEM}_sciimg.fits"), "mismatch",
             "holds an integer image with mask-bit definitions")
    _refused(home, db, renamed(sci, STEM.replace("_c13_", "_c12_") + "_sciimg.fits"),
             "mismatch", "CCD 13 but the name says c12")
    _refused(home, db, renamed(sci, STEM.replace("431759", "451759") + "_sciimg.fits"),
             "mismatch", "is not the exposure 20200924451759")
    _refused(home, db, renamed(sci, f"{REF_STEM}_refimg.fits"), "mismatch",
             "an exposure id (a science image)")
    (bad / "notes.txt").write_text("not a product\n")
    _refused(home, db, bad / "notes.txt", "bad_name", "not an IPAC product name")
    _refused(home, db, renamed(sci, f"{STEM}_sciimgdao.psf"), "unsupported",
             "DAOPhot lookup-table PSF")
    trunc = renamed(sci, f"{STEM}_sexcat.fits")
    trunc.write_bytes(sci.read_bytes()[:5000])
    _refused(home, db, trunc, "truncated", "2880-byte")
    data = fits.getdata(sci)
    h = sci_h.copy()
    del h["SEEING"]
    (bad / "noseeing").mkdir()
    fits.PrimaryHDU(data, h).writeto(bad / "noseeing" / f"{STEM}_sciimg.fits")
    _refused(home, db, bad / "noseeing" / f"{STEM}_sciimg.fits", "missing_keyword", "SEEING")
    with session(db) as s:
        assert s.scalar(select(func.count()).select_from(Quarantine)) == 9
    assert _count(db, QuadrantProduct) == 0 and _count(db, Exposure) == 0


def test_conflict_with_the_archived_file(cut, home: Home, db, tmp_path: Path):
    sci, _ = cut
    assert import_file(home, db, sci).status == "imported"
    other = tmp_path / "other" / sci.name
    other.parent.mkdir()
    data, h = fits.getdata(sci), fits.getheader(sci)
    fits.PrimaryHDU(data + 1.0, h).writeto(other)
    _refused(home, db, other, "conflict", f"differs from the archived {SCI_DIR}/{sci.name}")


def test_catalogues_and_difference_image(cut, home: Home, db, tmp_path: Path):
    sci, msk = cut
    h = fits.getheader(sci)
    d = tmp_path / "cats"
    d.mkdir()
    psf = write_psfcat(d / f"{STEM}_psfcat.fits", h, n=40)
    write_sexcat(d / f"{STEM}_sexcat.fits", h, n=30)
    diff = write_diff_fz(d / f"{STEM}_scimrefdiffimg.fits.fz", h,
                         np.random.default_rng(0).normal(0, 5, (96, 96)))
    # Before their exposure is known, catalogues cannot be filed.
    _refused(home, db, psf, "no_exposure", "import its sciimg or raw file first")
    res = import_paths(home, db, [d, sci, msk])  # a folder and files; sciimg first
    assert [(r.kind, r.status) for r in res] == [
        ("sciimg", "imported"), ("mskimg", "imported"), ("psfcat", "imported"),
        ("sexcat", "imported"), ("scimrefdiffimg", "imported")]
    with session(db) as s:
        rows = {r.kind: r for r in s.scalars(select(QuadrantProduct))}
    assert rows["psfcat"].nsources == 40 and rows["sexcat"].nsources == 30
    assert rows["scimrefdiffimg"].relpath == f"{SCI_DIR}/{diff.name}"
    assert {r.pid for r in rows.values()} == {PID}
    # A psfcat without IPAC's columns is a table, not a PSF-fit catalogue.
    wrong = tmp_path / "wrong" / psf.name
    wrong.parent.mkdir()
    write_psfcat(wrong, h, drop="sigflux")
    _refused(home, db, wrong, "mismatch", "neither a PSF-fit nor a SExtractor catalogue")


def test_reference_products(real_images: Path, home: Home, db, tmp_path: Path):
    ref = make_reference(real_images, tmp_path / "ref", 1500, 1500, 80)
    # refunc and refcov need their refimg.
    _refused(home, db, ref["refunc"], "no_reference", "import the refimg first")
    res = import_paths(home, db, [tmp_path / "ref"])
    assert [(r.kind, r.status) for r in res] == [
        ("refimg", "imported"), ("refcov", "imported"), ("refunc", "imported")]
    with session(db) as s:
        row = s.scalars(select(Reference)).one()
    assert (row.version, row.rfid, row.field, row.ccdid, row.qid, row.fid, row.nframes) == (
        1, make_rfid(655, 2, 1, 13, 3), 655, 13, 3, 2, 15)
    assert row.relpath == f"{REF_DIR}/v001/{REF_STEM}_refimg.fits" and row.input_pids == []
    assert (row.jdstart, row.jdend) == (2458300.5, 2458700.5)
    assert row.seeing == pytest.approx(fits.getheader(ref["refimg"])["SEEING"] * 1.012)
    for suffix in ("refunc", "refcov"):
        assert home.path(f"{REF_DIR}/v001/{REF_STEM}_{suffix}.fits").exists()
    assert [r.status for r in import_paths(home, db, [tmp_path / "ref"])] == ["duplicate"] * 3
    # IPAC rebuilt its reference: a new version.
    data, h = fits.getdata(ref["refimg"]), fits.getheader(ref["refimg"])
    newer = tmp_path / "newer" / ref["refimg"].name
    newer.parent.mkdir()
    del h["JDSTART"], h["JDEND"]
    fits.PrimaryHDU(data * 1.0001, h).writeto(newer)
    r = import_file(home, db, newer)
    assert r.status == "imported" and "/v002/" in str(r.path) and "version 2" in r.message
    with session(db) as s:
        v2 = s.scalars(select(Reference).where(Reference.version == 2)).one()
    assert (v2.jdstart, v2.jdend) == (-999.0, -999.0)  # no input span in the header: unknown
    small = tmp_path / "small" / ref["refunc"].name
    small.parent.mkdir()
    fits.PrimaryHDU(np.ones((40, 40), np.float32)).writeto(small)
    _refused(home, db, small, "bad_value", "differs from its refimg")


def test_raw_file_goes_through_ingest(home: Home, db, tmp_path: Path):
    raw = tmp_path / RAW_NAME
    write_real_layout(raw)
    r = import_file(home, db, raw)
    assert (r.kind, r.status) == ("raw", "imported"), r.message
    assert r.path == home.path(f"raw/2020/0924/431759/{RAW_NAME}") and raw.exists()
    assert import_file(home, db, raw).status == "duplicate"
    with session(db) as s:
        assert s.scalars(select(RawFile)).one().relpath == f"raw/2020/0924/431759/{RAW_NAME}"


def test_expand_paths_orders_and_skips_hidden(tmp_path: Path):
    (tmp_path / "a" / ".hidden").mkdir(parents=True)
    for name in (f"{REF_STEM}_refunc.fits", f"{REF_STEM}_refimg.fits", f"{STEM}_psfcat.fits",
                 f"{STEM}_sciimg.fits", "x.txt", ".hidden/y.fits", RAW_NAME):
        (tmp_path / "a" / name).write_text("")
    names = [p.name for p in expand_paths([tmp_path / "a"])]
    assert names == [RAW_NAME, f"{STEM}_sciimg.fits", f"{STEM}_psfcat.fits",
                     f"{REF_STEM}_refimg.fits", f"{REF_STEM}_refunc.fits", "x.txt"]


def test_product_error_has_reason():
    with pytest.raises(ProductError) as e:
        parse_product_name("ztf_20200924431759_000655_zr_c13_o_q3_foo.fits")
    assert e.value.reason == "bad_name" and "unknown IPAC product suffix" in e.value.message
