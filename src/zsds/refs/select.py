"""Choose the epochal images that go into a reference co-add.

A candidate table has one row per calibrated quadrant image with the QA keywords of its science
header (lower-case column names): ``infobits``, ``seeing`` (arcsec), ``maglim``, ``magzp``,
``astrrms1`` and ``astrrms2`` (arcsec). :func:`candidates_from_headers` builds it from headers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from astropy.io import fits

from zsds.core.instrument import PIXEL_SCALE

#: Header keywords (upper case) read into the candidate table (lower case).
QA_KEYWORDS = ("INFOBITS", "SEEING", "MAGLIM", "MAGZP", "ASTRRMS1", "ASTRRMS2")


@dataclass(frozen=True)
class SelectConfig:
    """Quality cuts and counts for reference-epoch selection."""

    min_epochs: int = 15  #: fewest good epochs of a reference; fewer raises ``ValueError``
    max_epochs: int = 40  #: most epochs used (best seeing first); ZTF used up to ~40
    max_seeing: float = 3.0  #: largest PSF FWHM accepted (arcsec, header SEEING)
    min_maglim: float = 19.5  #: least 5-sigma limiting magnitude (MAGLIM) accepted
    min_zp: float = 24.5  #: lowest MAGZP accepted (mag, DN): clouds, failed calibrations
    max_zp: float = 27.5  #: highest MAGZP accepted (mag, DN)
    max_astrom_rms: float = 0.1  #: largest ASTRRMS1/2 (arcsec); 0.1 is the INFOBITS threshold

    def __post_init__(self) -> None:
        if not 1 <= self.min_epochs <= self.max_epochs:
            raise ValueError(
                f"need 1 <= min_epochs <= max_epochs, got {self.min_epochs}, {self.max_epochs}"
            )


def candidates_from_headers(headers: Sequence[fits.Header]) -> pd.DataFrame:
    """Candidate table (one row per header) with the QA columns :func:`select_epochs` reads.

    Missing keywords become NaN, which fails every cut. ``seeing`` is in arcsec: IPAC's
    products (imported and not re-calibrated) give SEEING in pixels, as its comment says, and
    are converted by the pixel scale; zsds's own give arcsec.
    """
    rows = []
    for h in headers:
        row = {k.lower(): h.get(k, np.nan) for k in QA_KEYWORDS}
        if "SEEING" in h and "pix" in str(h.comments["SEEING"]).lower():
            row["seeing"] = float(h["SEEING"]) * PIXEL_SCALE
        rows.append(row)
    return pd.DataFrame(rows, columns=[k.lower() for k in QA_KEYWORDS])


def select_epochs(candidates: pd.DataFrame, config: SelectConfig | None = None) -> pd.DataFrame:
    """Select the reference input epochs: quality cuts, then best seeing first.

    Parameters
    ----------
    candidates : DataFrame
        One row per candidate image with columns ``infobits``, ``seeing``, ``maglim``, ``magzp``,
        ``astrrms1``, ``astrrms2`` (other columns are carried along).
    config : SelectConfig, optional

    Returns
    -------
    DataFrame
        Between ``min_epochs`` and ``max_epochs`` rows of ``candidates`` (original index), sorted
        by increasing seeing (ties: deeper MAGLIM first).

    Raises
    ------
    ValueError
        If a required column is missing, or fewer than ``min_epochs`` candidates pass the cuts; the
        message counts the rejections per cut.
    """
    cfg = config or SelectConfig()
    missing = [k.lower() for k in QA_KEYWORDS if k.lower() not in candidates.columns]
    if missing:
        raise ValueError(f"candidate table lacks required column(s): {', '.join(missing)}")
    c = candidates
    seeing = c["seeing"].to_numpy(float)
    rms = np.maximum(c["astrrms1"].to_numpy(float), c["astrrms2"].to_numpy(float))
    zp = c["magzp"].to_numpy(float)
    # NaN and the -999 "not measured" sentinels fail every cut (comparisons with NaN are False).
    cuts = {
        "INFOBITS != 0": ~(c["infobits"].fillna(-1).to_numpy() == 0),
        f"seeing not in (0, {cfg.max_seeing}] arcsec": ~((seeing > 0) & (seeing <= cfg.max_seeing)),
        f"maglim < {cfg.min_maglim}": ~(c["maglim"].to_numpy(float) >= cfg.min_maglim),
        f"magzp not in [{cfg.min_zp}, {cfg.max_zp}]": ~((zp >= cfg.min_zp) & (zp <= cfg.max_zp)),
        f"astrometric rms not in [0, {cfg.max_astrom_rms}] arcsec": ~(
            (rms >= 0) & (rms <= cfg.max_astrom_rms)
        ),
    }
    bad = np.logical_or.reduce(list(cuts.values())) if len(c) else np.zeros(0, bool)
    good = c.loc[~bad]
    if len(good) < cfg.min_epochs:
        why = "; ".join(f"{name}: {int(m.sum())}" for name, m in cuts.items() if m.any())
        raise ValueError(
            f"not enough good epochs for a reference: {len(good)} of {len(c)} candidates pass "
            f"the quality cuts, need min_epochs={cfg.min_epochs}"
            + (f" (rejected by {why})" if why else "")
        )
    order = np.lexsort((-good["maglim"].to_numpy(float), good["seeing"].to_numpy(float)))
    return good.iloc[order[: cfg.max_epochs]].copy()


__all__ = ["QA_KEYWORDS", "SelectConfig", "candidates_from_headers", "select_epochs"]
