"""Raw files: structure, headers, determinism."""

from __future__ import annotations

import numpy as np
from astropy.io import fits

from zsds.core.home import Home
from zsds.core.naming import parse_raw_name
from zsds.core.rawformat import (
    IMAGE_INDEX,
    OVERSCAN_INDEX,
    RAW_FLAT_KEYS,
    RAW_IMAGE_KEYS,
    RAW_IMAGE_OPTIONAL,
    RAW_OVERSCAN_KEYS,
    RAW_PRIMARY_KEYS,
    RAW_PRIMARY_OPTIONAL,
    REFERENCE_RAW_KEYS,
    exposure_id,
)
from zsds.sim.run import simulate_night

from .conftest import CCD, FIELD, NIGHT, SIZE


def _raw(home, kind):
    return sorted(home.incoming.glob(f"*_{kind}.fits.fz"))


def test_files_named_and_counted(sim_home):
    assert len(_raw(sim_home, "b")) == 5
    assert len(_raw(sim_home, "f")) == 2
    sci = _raw(sim_home, "o")
    assert len(sci) == 2
    for p in sci:
        name = parse_raw_name(p.name)
        assert name.field == FIELD and name.ccdid == CCD and name.filtercode in ("zr", "zg")
    assert not list(sim_home.incoming.glob(".*"))  # no leftover temporary files


def test_raw_structure_and_every_reference_keyword(sim_home):
    for p in _raw(sim_home, "o") + _raw(sim_home, "b") + _raw(sim_home, "f"):
        with fits.open(p) as hdul:
            assert len(hdul) == 9
            prim = hdul[0].header
            assert prim["NAXIS"] == 0 and prim["NFRAMES"] == 8
            for key in RAW_PRIMARY_KEYS:
                assert key in prim, (p.name, key)
            # the real keyword set: what the camera writes, nothing IPAC adds later
            for key in RAW_PRIMARY_OPTIONAL:
                assert key in prim or key == "EXPID", (p.name, key)
            for key in ("DATE-OBS", "EXPID", "SEEING", "CCD_ID", "QID", "RCID"):
                assert key not in prim, key
            assert isinstance(prim["TELRA"], str) and prim["TELRA"][0] in "+-"
            assert prim["FILENAME"] == p.name.removesuffix(".fz")
            if prim["IMGTYPE"] == "dome":
                for key in RAW_FLAT_KEYS:
                    assert key in prim
            for q in (1, 2, 3, 4):
                # found by index: image q at HDU q, its overscan at q + 4
                img = hdul[IMAGE_INDEX[q]]
                ovs = hdul[OVERSCAN_INDEX[q]]
                assert IMAGE_INDEX[q] == q and OVERSCAN_INDEX[q] == q + 4
                assert isinstance(img, fits.CompImageHDU)
                assert img.data.shape == (SIZE, SIZE) and img.data.dtype == np.uint16
                assert ovs.data.shape == (SIZE, 30)
                for key in (*RAW_IMAGE_KEYS, *RAW_IMAGE_OPTIONAL):
                    assert key in img.header or key == "SATURATE", key
                for key in ("SATURATE", "INFOBITS", "QID", "RCID", "FLIPX", "FLIPY"):
                    assert key not in img.header, key
                assert img.header["AMP_ID"] == q - 1 and img.header["CCD_ID"] == CCD
                for key in RAW_OVERSCAN_KEYS:
                    assert key in ovs.header, key
                merged = prim.copy()
                merged.update(img.header)
                for key in REFERENCE_RAW_KEYS:
                    assert key in merged, key
            # extension names as in real files: the index as a string
            assert [h.name for h in hdul[1:]] == [str(k) for k in range(1, 9)]


def test_expid_from_the_name_is_the_truth_expid(sim_home):
    for p in _raw(sim_home, "o"):
        expid = exposure_id(fits.getheader(p), p.name)
        assert list(sim_home.truth.glob(f"*/{expid}/exposure.json")), (p.name, expid)


def test_rice_compressed_on_disk(sim_home):
    p = _raw(sim_home, "o")[0]
    raw_bytes = 4 * (SIZE * SIZE + SIZE * 30) * 2
    assert p.stat().st_size < 0.8 * raw_bytes
    with fits.open(p, disable_image_compression=True) as hdul:
        assert hdul[1].header["ZCMPTYPE"] == "RICE_1"


def test_deterministic(tmp_path, sim_home):
    home = Home.resolve(tmp_path)
    simulate_night(home, NIGHT, 1, [FIELD], SIZE, [CCD], seed=5)
    a = sorted(home.incoming.glob("*_o.fits.fz"))[0]
    b = sim_home.incoming / a.name
    with fits.open(a) as ha, fits.open(b) as hb:
        for k in range(1, 9):
            assert np.array_equal(ha[k].data, hb[k].data)
    other = Home.resolve(tmp_path / "other")
    simulate_night(other, NIGHT, 1, [FIELD], SIZE, [CCD], seed=6, filters=("r",))
    c = sorted(other.incoming.glob("*_o.fits.fz"))[0]
    with fits.open(c) as hc, fits.open(b) as hb:
        assert not np.array_equal(hc[1].data, hb[1].data)
