"""Settings of reference building (:func:`zsds.refs.run.build_references`).

Kept apart from the runner so that :class:`zsds.config.PipelineConfig`, which every runner
imports, can hold them without importing the runner (no import cycle).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zsds.instcal.detect import DetectConfig
from zsds.instcal.moffat import MoffatPSFConfig
from zsds.instcal.photcal import PhotCalConfig
from zsds.instcal.psf import PSFConfig
from zsds.instcal.psfphot import PSFPhotConfig
from zsds.instcal.stage import InfoBits
from zsds.refs.coadd import CoaddConfig
from zsds.refs.select import SelectConfig

__all__ = ["RefBuildConfig"]


@dataclass(frozen=True)
class RefBuildConfig:
    """Options of :func:`~zsds.refs.run.build_references` (one sub-config per step).

    ``select`` judges the input epochs by seeing, depth, zero point and astrometric rms. The
    co-add is measured as in :class:`~zsds.instcal.stage.InstCalConfig` and fits its own PSF
    (the inputs' models are not used), hence ``ignore_infobits`` defaults to ``FEW_PSF_STARS``
    only. ``shape`` None is the full quadrant in production, smaller for simulated quadrants.
    """

    select: SelectConfig = field(default_factory=SelectConfig)  #: epochs entering the co-add
    coadd: CoaddConfig = field(default_factory=CoaddConfig)  #: resampling and clipped stacking
    detect: DetectConfig = field(default_factory=DetectConfig)  #: background, extraction
    psf_select: PSFConfig = field(default_factory=PSFConfig)  #: PSF stars of the co-add
    psf: MoffatPSFConfig = field(default_factory=MoffatPSFConfig)  #: the co-add's own Moffat PSF
    psfphot: PSFPhotConfig = field(default_factory=PSFPhotConfig)  #: PSF-fit photometry
    photcal: PhotCalConfig = field(default_factory=PhotCalConfig)  #: zero point of the co-add
    ignore_infobits: int = InfoBits.FEW_PSF_STARS  #: input INFOBITS cleared before selection
    psffit_min_snr: float = 3.0  #: keep PSF fits at or above this S/N
    shape: tuple[int, int] | None = None  #: (ny, nx) reference grid; None: the inputs' size
