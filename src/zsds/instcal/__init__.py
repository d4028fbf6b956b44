"""Instrumental calibration of science quadrants (astrometry, photometry)."""
