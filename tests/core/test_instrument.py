import numpy as np
import pytest

from zsds.core.fields import get_field
from zsds.core.instrument import (
    PIXEL_SCALE,
    QUAD_NX,
    QUAD_NY,
    Filter,
    amplifiers,
    ccd_placements,
    from_raw_orientation,
    quadrant_pixel_to_focal_plane,
    to_raw_orientation,
)
from zsds.core.masks import BAD_PIXEL_BITS, MaskBit, mask_header_cards


def test_amplifiers_are_realistic_and_fixed():
    amps = amplifiers()
    assert len(amps) == 64
    gains = np.array([a.gain for a in amps.values()])
    noise = np.array([a.read_noise for a in amps.values()])
    assert abs(gains.mean() - 5.8) < 0.15 and gains.std() > 0.05
    assert abs(noise.mean() - 10.3) < 0.5
    assert all(40000 < a.saturate_adu <= 65535 for a in amps.values())


def test_ccd_placement_reproduces_real_layout_scale():
    for ccd, place in ccd_placements().items():
        scale = np.sqrt(abs(np.linalg.det(place.matrix))) * 3600
        assert abs(scale - PIXEL_SCALE) < 0.01, ccd


def test_quadrants_tile_their_ccd():
    # q1 is upper-right, q3 lower-left of the same CCD.
    ew1, ns1 = quadrant_pixel_to_focal_plane(6, 1, np.array([0.0]), np.array([0.0]))
    ew3, ns3 = quadrant_pixel_to_focal_plane(6, 3, np.array([QUAD_NX]), np.array([QUAD_NY]))
    assert np.allclose([ew1, ns1], [ew3, ns3], atol=1e-9)


def test_raw_flip_is_an_involution():
    a = np.arange(12).reshape(3, 4)
    for q in (1, 2, 3, 4):
        assert np.array_equal(from_raw_orientation(to_raw_orientation(a, q), q), a)
    assert to_raw_orientation(a, 1)[0, 0] == a[-1, -1]
    assert to_raw_orientation(a, 3)[0, 0] == a[0, 0]


def test_filters_and_fields():
    assert Filter.parse("zg") is Filter.g and Filter.parse(2) is Filter.r
    with pytest.raises(ValueError, match="unknown ZTF filter"):
        Filter.parse("u")
    f = get_field(658)
    assert f.fieldid == 658 and 0 <= f.ra < 360
    with pytest.raises(ValueError, match="unknown ZTF field id 5000"):
        get_field(5000)


def test_mask_bits():
    assert BAD_PIXEL_BITS == 6141
    assert MaskBit.SATURATED == 256 and MaskBit.HALO == 4096
    assert len(mask_header_cards()) == 13
