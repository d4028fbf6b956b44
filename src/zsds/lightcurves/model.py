"""Data model of pipeline 8 (light curves): the IPAC matchfile tables as numpy dtypes.

The column names, types and order of the five matchfile tables are those of the real IPAC
matchfiles (PyTables HDF5; samples in ``tests/data/matchfiles``); zsds appends its own columns after
the IPAC ones (marked ``zsds`` below) so that readers of the real files read ours unchanged.
Every table is a numpy structured array of one of these dtypes; :class:`MatchSet` holds one
field/CCD-quadrant/filter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Magnitude percentiles stored in the ``percentiles`` column (12 values, as IPAC).  Chosen
#: symmetric about the median so that ``percentiles[8] - percentiles[3]`` is the
#: inter-quartile range, which is how Kowalski reads the real files.
PERCENTILES = (2.0, 5.0, 10.0, 25.0, 35.0, 45.0, 55.0, 65.0, 75.0, 90.0, 95.0, 98.0)

#: Thresholds (in standard deviations) of the three-element run-count columns.
NSTD = (1.0, 3.0, 5.0)

#: ``catflags`` bit set on every point of an epoch judged bad (cloudy, failed refinement),
#: as in IPAC light curves.
CATFLAG_BAD_EPOCH = 32768

#: First matchid of objects not in the reference catalog (``transients``); ``sources`` take
#: the reference catalogue's ``sourceid`` (1..N), so the two never collide.
TRANSIENT_MATCHID0 = 50_000_000

EXPOSURES_DTYPE = np.dtype([
    ("airmass", "<f4"), ("clrcoeff", "<f4"), ("clrcounc", "<f4"), ("clrmed", "<f4"),
    ("clrrms", "<f4"), ("diq", "<f4"), ("expid", "<u4"), ("exptime", "<f4"),
    ("fieldid", "<u4"), ("filterid", "<u2"), ("fracday", "<u8"), ("gmedian", "<f4"),
    ("infobits", "<u4"), ("ipac_pub_date", "<f4"), ("limitmag", "<f4"), ("magzp", "<f4"),
    ("magzprms", "<f4"), ("magzpunc", "<f4"), ("nps1matches", "<i4"), ("nsources", "<i4"),
    ("nstars", "<i4"), ("ntransients", "<i4"), ("obshjd", "<f8"), ("obsmjd", "<f8"),
    ("pcolor", "S8"), ("programid", "<u2"), ("programpi", "S40"), ("rcid", "u1"),
    ("zpclrcov", "<f4"), ("zpmed", "<f4"),
    # zsds: relative photometric refinement of this epoch.
    ("pid", "<i8"),         # processing id of the science quadrant
    ("zprefine", "<f4"),    # mag added to MAGZP by the refinement (refined = raw + zprefine)
    ("gaincorr", "<f4"),    # the same as a flux factor, 10**(0.4 zprefine)
    ("zprefineunc", "<f4"),  # its 1-sigma uncertainty (mag)
    ("ncalib", "<i4"),      # calibrators used for this epoch
    ("calrms", "<f4"),      # robust rms of the calibrators' residuals (mag)
    ("badepoch", "u1"),     # 1: all points of the epoch carry CATFLAG_BAD_EPOCH
])

_OBJECT_FIELDS = [
    ("astrometricrms", "<f8"), ("chisq", "<f4"), ("con", "<f4"), ("dec", "<f8"),
    ("lineartrend", "<f4"), ("magrms", "<f4"), ("matchid", "<i4"), ("maxmag", "<f4"),
    ("maxslope", "<f4"), ("meanmag", "<f4"), ("medianabsdev", "<f4"), ("medianmag", "<f4"),
    ("medmagerr", "<f4"), ("minmag", "<f4"),
    ("nabovemeanbystd", "<u2", (3,)), ("nbelowmeanbystd", "<u2", (3,)),
    ("nconsecabovemeanbystd", "<u2", (3,)), ("nconsecbelowmeanbystd", "<u2", (3,)),
    ("nconsecfrommeanbystd", "<u2", (3,)),
    ("ngoodobs", "<u2"), ("ngoodobsrel", "<u2"), ("nmedianbufferrange", "<u2"),
    ("nobs", "<u2"), ("nobsrel", "<u2"), ("npairposslope", "<u2"),
    ("percentiles", "<f4", (12,)), ("ra", "<f8"), ("refchi", "<f4"), ("refmag", "<f4"),
    ("refmagerr", "<f4"), ("refsharp", "<f4"), ("refsnr", "<f4"), ("skewness", "<f4"),
    ("smallkurtosis", "<f4"), ("stetsonj", "<f4"), ("stetsonk", "<f4"),
    ("uncalibmeanmag", "<f4"), ("vonneumannratio", "<f4"), ("weightedmagrms", "<f4"),
    ("weightedmeanmag", "<f4"), ("x", "<f8"), ("y", "<f8"), ("z", "<f8"),
]
#: ``sources`` (objects of the reference catalogue) and ``transients`` (the others).
SOURCES_DTYPE = np.dtype([
    *_OBJECT_FIELDS,
    # zsds
    ("oid", "<i8"),          # ZTF DR object id (see :func:`zsds.lightcurves.ids.oid`)
    ("period", "<f8"),       # best Lomb-Scargle period (d), NaN if not computed
    ("periodpower", "<f4"),  # its normalised power
])
TRANSIENTS_DTYPE = SOURCES_DTYPE

SOURCEDATA_DTYPE = np.dtype([
    ("catflags", "<u2"), ("chi", "<f4"), ("dec", "<f8"), ("expid", "<u4"), ("hjd", "<f8"),
    ("mag", "<f4"), ("magerr", "<f4"), ("magerrmodel", "<f4"), ("matchid", "<u4"),
    ("mjd", "<f8"), ("programid", "<u2"), ("psfflux", "<f4"), ("psffluxerr", "<f4"),
    ("ra", "<f8"), ("sharp", "<f4"), ("xpos", "<f4"), ("ypos", "<f4"),
    # zsds: raw photometry (before the relative refinement; ``mag`` is refined).
    ("psfmag", "<f4"), ("psfmagerr", "<f4"), ("snr", "<f4"), ("sid", "<u8"),
])
TRANSIENTDATA_DTYPE = np.dtype([
    ("catflags", "<u2"), ("chi", "<f4"), ("dec", "<f8"), ("expid", "<u4"), ("hjd", "<f8"),
    ("mag", "<f4"), ("magerr", "<f4"), ("magerrmodel", "<f4"), ("matchid", "<u4"),
    ("mjd", "<f8"), ("programid", "<u2"), ("psfflux", "<f4"), ("psffluxerr", "<f4"),
    ("psfmag", "<f4"), ("psfmagerr", "<f4"), ("ra", "<f8"), ("sharp", "<f4"),
    ("sid", "<u8"), ("snr", "<f4"), ("x", "<f8"), ("xpos", "<f4"), ("y", "<f8"),
    ("ypos", "<f4"), ("z", "<f8"),
])

#: Group attributes of ``/matches`` with their types, as in the real files.
MATCH_ATTRS: dict[str, type] = {
    "fieldID": np.int64, "ccdID": np.int64, "quadrantID": np.int64, "rcID": np.int64,
    "filterID": np.int64, "referenceImageID": np.int64, "referenceZeroPoint": np.float64,
    "referenceZeroPointErr": np.float64, "saturatedMagnitude": np.float64,
    "globalMaglimit": np.float32, "goodSystematicErrorLimit": np.float64,
    "nCalibrationSources": np.int64, "calibratedSinceLastMatch": np.int64,
    "datetimeMatched": str, "datetimeCalibrated": str,
}


@dataclass
class MatchSet:
    """All light curves of one field, CCD quadrant and filter (one matchfile).

    Attributes
    ----------
    attrs : dict
        The ``/matches`` group attributes (keys of :data:`MATCH_ATTRS`, plus any zsds extras).
    exposures, sources, sourcedata, transients, transientdata : numpy.ndarray
        Structured arrays of the dtypes above; ``*data`` sorted by (matchid, mjd).
    features : pandas.DataFrame or None
        zsds extension: the full metric set (> 100 columns) per object, indexed by matchid
        (sources and transients together); stored as ``/matches/features``.
    """

    attrs: dict[str, Any]
    exposures: np.ndarray
    sources: np.ndarray
    sourcedata: np.ndarray
    transients: np.ndarray = field(default_factory=lambda: np.zeros(0, TRANSIENTS_DTYPE))
    transientdata: np.ndarray = field(
        default_factory=lambda: np.zeros(0, TRANSIENTDATA_DTYPE))
    features: Any = None

    @property
    def fieldid(self) -> int:
        return int(self.attrs["fieldID"])

    @property
    def rcid(self) -> int:
        return int(self.attrs["rcID"])

    @property
    def filterid(self) -> int:
        return int(self.attrs["filterID"])
