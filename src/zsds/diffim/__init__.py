"""Image differencing: ZOGY proper image subtraction kernels (:mod:`zsds.diffim.zogy`)."""

from zsds.diffim.zogy import ZogyConfig, ZogyResult, psf_flux, psf_flux_error, zogy

__all__ = ["ZogyConfig", "ZogyResult", "psf_flux", "psf_flux_error", "zogy"]
