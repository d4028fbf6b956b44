"""Read back what the instrumental calibration of a quadrant wrote.

:func:`zsds.instcal.run.calibrate_night` writes each quadrant's products and then releases its
pixels, so a benchmark reads the figures it prints from disk: the step timings from the log
(``...sciimlog.txt``), the catalogue lengths from ``psfcat`` / ``sexcat`` and the image shape
and astrometric matches from the ``sciimg`` header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from astropy.io import fits

__all__ = ["CalibratedQuadrant", "log_step_timings", "read_calibrated"]

_STEP = re.compile(r"^step\s+(\S+)\s+([-+0-9.eE]+|nan)\s+s\s*$")


def log_step_timings(log: Path | str) -> dict[str, float]:
    """Step timings (seconds, in the order written) of a calibration log.

    Parameters
    ----------
    log : path-like
        A ``..._sciimlog.txt`` written by :func:`zsds.instcal.run.write_products`; each timed
        step is a line ``step NAME SECONDS s``.

    Returns
    -------
    dict of str to float
        ``{step name: seconds}``; empty if the log holds no step lines.
    """
    out: dict[str, float] = {}
    for line in Path(log).read_text().splitlines():
        m = _STEP.match(line.strip())
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


@dataclass(frozen=True)
class CalibratedQuadrant:
    """Figures of one calibrated quadrant, as read back from its products.

    Attributes
    ----------
    shape : tuple of int
        ``(ny, nx)`` of the science image.
    n_sexcat, n_psfcat : int
        Rows of the aperture (``sexcat``) and PSF-fit (``psfcat``) catalogues.
    n_astrom : int
        Reference stars in the astrometric fit (header ``ASTRNMAT``).
    infobits : int
        Header ``INFOBITS``.
    timings : dict of str to float
        Seconds per step of :func:`zsds.instcal.stage.calibrate_quadrant` (from the log).
    """

    shape: tuple[int, int]
    n_sexcat: int
    n_psfcat: int
    n_astrom: int
    infobits: int
    timings: dict[str, float]


def _rows(path: Path) -> int:
    with fits.open(path, memmap=False) as h:
        return int(h[1].header.get("NAXIS2", 0)) if len(h) > 1 else 0


def read_calibrated(products: dict[str, Path]) -> CalibratedQuadrant:
    """Figures of a calibrated quadrant from its products (no pixels are read).

    Parameters
    ----------
    products : dict of str to Path
        ``QuadrantOutcome.products``: at least ``sciimg``, ``psfcat``, ``sexcat`` and ``log``.

    Returns
    -------
    CalibratedQuadrant
    """
    hdr = fits.getheader(products["sciimg"])
    return CalibratedQuadrant(
        shape=(int(hdr["NAXIS2"]), int(hdr["NAXIS1"])),
        n_sexcat=_rows(products["sexcat"]),
        n_psfcat=_rows(products["psfcat"]),
        n_astrom=int(hdr.get("ASTRNMAT", 0)),
        infobits=int(hdr.get("INFOBITS", 0)),
        timings=log_step_timings(products["log"]),
    )
