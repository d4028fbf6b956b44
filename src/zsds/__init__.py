"""zsds: an open re-implementation of the Zwicky Transient Facility Science Data System."""

__version__ = "0.1.0"
