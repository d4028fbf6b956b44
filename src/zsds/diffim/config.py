"""Settings of the subtraction runner (:func:`zsds.diffim.run.subtract_quadrant`).

Kept apart from the runner so that :class:`zsds.config.PipelineConfig`, which every runner
imports, can hold them without importing the runner (no import cycle).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from zsds.diffim.candidates import CandidateConfig
from zsds.diffim.stage import SubtractConfig

__all__ = ["PacketCuts", "SubtractRunConfig"]


@dataclass(frozen=True)
class PacketCuts:
    """IPAC's packet-triggering cuts (ES section 9.1; ``ZTF_REFERENCE.md`` 2.4 item 9)."""

    min_snr: float = 5.0
    max_magpsf: float = 23.5
    max_nbad: int = 4
    max_fwhm: float = 7.0
    max_elong: float = 1.6
    magdiff_range: tuple[float, float] = (-0.4, 0.75)
    min_rb: float = 0.0

    def apply(self, c: pd.DataFrame) -> np.ndarray:
        """Which candidates pass every cut (a missing ``rb`` counts as 0).

        Parameters
        ----------
        c : DataFrame
            Candidates with ``snr``, ``magpsf``, ``nbad``, ``fwhm``, ``elong``, ``magdiff``
            and optionally ``rb``.

        Returns
        -------
        ndarray of bool
        """
        lo, hi = self.magdiff_range
        rb = c["rb"].fillna(0.0) if "rb" in c else 0.0
        return ((c["snr"] >= self.min_snr) & (c["magpsf"] <= self.max_magpsf)
                & (c["nbad"] <= self.max_nbad) & (c["fwhm"] <= self.max_fwhm)
                & (c["elong"] <= self.max_elong) & (c["magdiff"] >= lo)
                & (c["magdiff"] <= hi) & (rb >= self.min_rb)).to_numpy(bool)


@dataclass(frozen=True)
class SubtractRunConfig:
    """Settings of the runner: the stage configurations, cuts and whether to score rb.

    Attributes
    ----------
    subtract : SubtractConfig
        ZOGY subtraction (:func:`zsds.diffim.stage.subtract`).
    candidates : CandidateConfig
        Candidate extraction and measurement.
    cuts : PacketCuts
        Which candidates become alert packets.
    score_rb : bool
        Score candidates with the real-bogus classifier.
    tag_known : bool
        Tag known asteroids (``ssnamenr``...).
    streaks : bool
        Search the difference image for streaks (:class:`zsds.config.PipelineConfig`
        ``streaks`` holds their settings).
    """

    subtract: SubtractConfig = field(default_factory=SubtractConfig)
    candidates: CandidateConfig = field(default_factory=CandidateConfig)
    cuts: PacketCuts = field(default_factory=PacketCuts)
    score_rb: bool = True
    tag_known: bool = True
    streaks: bool = True
