"""The archive's image index: built from the pipeline tables, idempotent, and the footprint
search agrees with each image's own WCS."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from sqlalchemy import func, select

from zsds.archive.index import images_at, update_index
from zsds.core.rawformat import pointing_deg
from zsds.db.engine import session
from zsds.db.schema import ArchiveImage, CalibProduct, QuadrantProduct, RawFile, Reference


@pytest.fixture(scope="module")
def engine(archive_home, archive_engine):
    update_index(archive_home, archive_engine)
    return archive_engine


def test_every_product_indexed_once(archive_home, engine):
    with session(engine) as s:
        n = {t: c for t, c in s.execute(select(ArchiveImage.tbl, func.count())
                                        .group_by(ArchiveImage.tbl))}
        n_sci = s.scalar(select(func.count()).where(QuadrantProduct.kind == "sciimg"))
        n_raw = s.scalar(select(func.count()).select_from(RawFile))
        n_ref = s.scalar(select(func.count()).select_from(Reference))
        n_cal = s.scalar(select(func.count()).select_from(CalibProduct))
    assert n == {"sci": n_sci, "raw": n_raw, "ref": n_ref, "cal": n_cal}
    assert n_sci > 0 and n_ref > 0
    assert update_index(archive_home, engine) == 0  # idempotent


def test_point_search_matches_the_wcs(archive_home, engine):
    """A point inside a quadrant (from its own WCS) finds exactly the images whose WCS
    contains it; a point just outside finds none of that quadrant."""
    sci = images_at(engine, "sci").sort_values("relpath")
    row = sci.iloc[0]
    h = fits.getheader(archive_home.path(row.relpath))
    w = WCS(h)
    ra, dec = w.all_pix2world([[20.0, 30.0]], 0)[0]
    hits = images_at(engine, "sci", ra, dec)
    assert row.relpath in set(hits.relpath)
    for rel in sci.relpath:
        wi = WCS(fits.getheader(archive_home.path(rel)))
        # quiet: points ~1 deg off another quadrant make the SIP inversion diverge (outside)
        x, y = wi.all_world2pix([[ra, dec]], 0, quiet=True)[0]
        inside = (0 <= x <= h["NAXIS1"] - 1) and (0 <= y <= h["NAXIS2"] - 1)
        assert inside == (rel in set(hits.relpath)), rel
    out_ra, out_dec = w.all_pix2world([[-40.0, -40.0]], 0)[0]
    assert row.relpath not in set(images_at(engine, "sci", out_ra, out_dec).relpath)


def test_intersect_modes(engine):
    sci = images_at(engine, "sci")
    r = sci.iloc[0]
    same = sci[(sci.rcid == r.rcid)]
    small = images_at(engine, "sci", r.ra, r.dec, 0.01, intersect="COVERS")
    assert set(small.relpath) == set(same.relpath)
    assert images_at(engine, "sci", r.ra, r.dec, 0.01, intersect="ENCLOSED").empty
    big = images_at(engine, "sci", r.ra, r.dec, 0.5, intersect="ENCLOSED")
    assert set(big.relpath) == set(same.relpath)
    assert images_at(engine, "sci", r.ra, r.dec, 0.5, intersect="COVERS").empty
    wide = images_at(engine, "sci", r.ra, r.dec, 3.0)
    assert len(wide) == len(sci)
    # Sorted by distance from the centre: the first is the most centred image.
    assert np.all(np.diff(wide.dist.to_numpy()) >= 0)


def test_raw_ccd_footprint_holds_its_quadrants(engine):
    raw = images_at(engine, "raw", where="field > 0")
    sci = images_at(engine, "sci")
    r = raw.iloc[0]
    quads = sci[sci.expid == r.expid]
    assert len(quads) == 4
    for q in quads.itertuples():
        assert r.relpath in set(images_at(engine, "raw", q.ra, q.dec).relpath)


def test_bad_arguments(engine):
    with pytest.raises(ValueError, match="INTERSECT"):
        images_at(engine, "sci", 10.0, 10.0, intersect="NEAR")
    with pytest.raises(ValueError, match="table"):
        images_at(engine, "nope")
    with pytest.raises(ValueError, match="Dec"):
        images_at(engine, "sci", 10.0, 95.0)


def test_pointing_and_moon_from_the_headers(archive_home, engine):
    """sci rows carry MOONILLF/TELRA/TELDEC of their header; a raw CCD row the pointing of
    its exposure and the Moon of its quadrants."""
    from zsds.db.schema import Exposure

    sci = images_at(engine, "sci")
    for r in sci.head(3).itertuples():
        h = fits.getheader(archive_home.path(r.relpath))
        assert r.moonillf == pytest.approx(h["MOONILLF"])
        # TELRA/TELDEC are sexagesimal, as in real headers; the index holds degrees.
        assert (r.telra, r.teldec) == pytest.approx(pointing_deg(h))
    with session(engine) as s:
        point = {e.expid: (e.ra, e.dec) for e in s.scalars(select(Exposure))}
    raw = images_at(engine, "raw")
    raw = raw[raw.imgtypecode == "o"]
    assert len(raw) > 0 and raw.moonillf.notna().all()
    for r in raw.itertuples():
        assert (r.telra, r.teldec) == pytest.approx(point[r.expid])
        moon = sci[sci.expid == r.expid].moonillf
        assert r.moonillf == pytest.approx(moon.median())
