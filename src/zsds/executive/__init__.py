"""Pipeline executive: runs nights on Dask distributed (:mod:`zsds.executive.night`)."""

from zsds.executive.night import ExecConfig, Executive, NightSummary

__all__ = ["ExecConfig", "Executive", "NightSummary"]
