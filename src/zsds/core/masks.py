"""ZTF mask bits (``mskimg``), defined once and asked for by name.

Values follow the IPAC Explanatory Supplement section 10.3 (see ``ZTF_REFERENCE.md`` 1.6).
"""

from __future__ import annotations

import enum

import numpy as np


class MaskBit(enum.IntFlag):
    """Bit planes of a ZTF science mask image."""

    AIRCRAFT_TRACK = 1 << 0
    SOURCE = 1 << 1
    LOW_RESPONSIVITY = 1 << 2
    HIGH_RESPONSIVITY = 1 << 3
    NOISY = 1 << 4
    GHOST = 1 << 5
    SPILLAGE_GHOST = 1 << 6
    SPIKE = 1 << 7
    SATURATED = 1 << 8
    DEAD = 1 << 9
    NAN = 1 << 10
    PSF_SOURCE = 1 << 11
    HALO = 1 << 12


#: One-line description of each bit, written into the mask header (MBIT_nn keywords).
MASK_DOC: dict[MaskBit, str] = {
    MaskBit.AIRCRAFT_TRACK: "aircraft/satellite track",
    MaskBit.SOURCE: "SExtractor source detection",
    MaskBit.LOW_RESPONSIVITY: "low responsivity",
    MaskBit.HIGH_RESPONSIVITY: "high responsivity",
    MaskBit.NOISY: "noisy",
    MaskBit.GHOST: "ghost from bright source",
    MaskBit.SPILLAGE_GHOST: "ghost from charge spillage",
    MaskBit.SPIKE: "pixel spike (possible rad hit)",
    MaskBit.SATURATED: "saturated (incl. bleed)",
    MaskBit.DEAD: "dead pixel",
    MaskBit.NAN: "NaN (not a number)",
    MaskBit.PSF_SOURCE: "PSF-extracted source position",
    MaskBit.HALO: "halo from bright source",
}

#: The common "bad pixel" selection: every bit except SOURCE (1) and PSF_SOURCE (11) = 6141.
BAD_PIXEL_BITS = int(sum(int(b) for b in MaskBit) - int(MaskBit.SOURCE) - int(MaskBit.PSF_SOURCE))

MASK_DTYPE = np.int16


def clean_flags(flags: np.ndarray) -> np.ndarray:
    """True where a catalogue ``flags`` value (mask OR over a source's box) holds no bad bit.

    Bits 1 and 11 (SOURCE, PSF_SOURCE) only say that a source is there: IPAC sets them under
    every detected source, so they never disqualify one; -1 (box off the image) does.
    """
    f = np.asarray(flags).astype(np.int64)
    return (f >= 0) & ((f & BAD_PIXEL_BITS) == 0)


def has_bits(mask: np.ndarray, bits: int | MaskBit) -> np.ndarray:
    """Boolean array, True where any of ``bits`` is set."""
    return (np.asarray(mask) & int(bits)) != 0


def mask_header_cards() -> list[tuple[str, int, str]]:
    """Header cards documenting every bit, as ``(MBIT_nn, value, description)``."""
    return [(f"MBIT_{b.bit_length() - 1:02d}", int(b), MASK_DOC[b]) for b in MaskBit]
