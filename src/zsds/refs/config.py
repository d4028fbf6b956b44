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

    Attributes
    ----------
    select : SelectConfig
        Which input epochs enter the co-add (seeing, depth, zero point, astrometric rms).
    coadd : CoaddConfig
        Resampling and clipped stacking of the selected epochs.
    detect, psf_select, psf, psfphot, photcal
        Background and extraction, PSF stars, Moffat PSF model, PSF-fit photometry and
        zero-point fit of the co-add, as in :class:`~zsds.instcal.stage.InstCalConfig` (the
        co-add fits its own PSF; the inputs' models are not used).
    shape : (ny, nx) or None
        Reference grid size; None: the size of the input images (the full quadrant in
        production, smaller for simulated quadrants).
    ignore_infobits : int
        INFOBITS of an input that do not disqualify it for a reference (cleared before
        selection). Default: ``FEW_PSF_STARS`` only -- the input's own PSF model is not used by
        the co-add, which fits its own.
    psffit_min_snr : float
        PSF-fit catalogue keeps fits above this S/N.
    """

    select: SelectConfig = field(default_factory=SelectConfig)
    coadd: CoaddConfig = field(default_factory=CoaddConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    psf_select: PSFConfig = field(default_factory=PSFConfig)
    psf: MoffatPSFConfig = field(default_factory=MoffatPSFConfig)
    psfphot: PSFPhotConfig = field(default_factory=PSFPhotConfig)
    photcal: PhotCalConfig = field(default_factory=PhotCalConfig)
    ignore_infobits: int = InfoBits.FEW_PSF_STARS
    psffit_min_snr: float = 3.0
    shape: tuple[int, int] | None = None
