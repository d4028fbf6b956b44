"""Layout and header keywords of a raw ZTF CCD file, shared by the simulator and ingest.

One fpacked multi-extension FITS file per CCD per exposure: a header-only primary HDU, the four
quadrant images in readout order as extensions 1-4 and their 30-column overscans as extensions
5-8 (``ext = qid + 4``), all RICE tile-compressed 16-bit integers.
"""

from __future__ import annotations

#: Extension names of the quadrant images and overscans (EXTNAME), by qid.
IMAGE_EXT = {q: f"IMG_Q{q}" for q in range(1, 5)}
OVERSCAN_EXT = {q: f"OVS_Q{q}" for q in range(1, 5)}

#: Keywords every raw primary header carries (ingest validates them).
RAW_PRIMARY_KEYS: dict[str, str] = {
    "ORIGIN": "where the file was written",
    "TELESCOP": "telescope (P48)",
    "INSTRUME": "instrument (ZTF/MOSAIC)",
    "IMGTYPE": "image type: object, bias, dark, dome",
    "EXPTIME": "requested exposure time (s)",
    "EXPID": "exposure id",
    "OBSJD": "Julian date at start of exposure (UTC)",
    "OBSMJD": "modified Julian date at start of exposure (UTC)",
    "DATE-OBS": "UTC date/time at start of exposure (ISO)",
    "SHUTOPEN": "shutter open time (UTC ISO)",
    "SHUTCLSD": "shutter close time (UTC ISO)",
    "FIELDID": "ZTF field id (0 for calibrations)",
    "PROGRMID": "program id (0 eng, 1 public, 2 partnership, 3 Caltech)",
    "FILTER": "filter name (ZTF_g, ZTF_r, ZTF_i, or NONE)",
    "FILTERID": "filter id (1 g, 2 r, 3 i; 0 none)",
    "CCD_ID": "CCD id 1-16",
    "RA": "commanded right ascension (sexagesimal)",
    "DEC": "commanded declination (sexagesimal)",
    "TELRA": "telescope RA (deg)",
    "TELDEC": "telescope Dec (deg)",
    "AZIMUTH": "telescope azimuth (deg)",
    "ELVATION": "telescope elevation (deg)",
    "AIRMASS": "airmass at start of exposure",
    "OBSLAT": "observatory latitude (deg)",
    "OBSLON": "observatory longitude (deg, east positive)",
    "OBSALT": "observatory altitude (m)",
    "PIXSCALE": "nominal pixel scale (arcsec/pixel)",
    "SEEING": "guider seeing estimate (arcsec FWHM)",
    "MOONILLF": "moon illuminated fraction",
    "CCDTEMP": "CCD temperature (C)",
    "DETSOFT": "camera software version",
}

#: Extra keywords in dome-flat headers.
RAW_FLAT_KEYS: dict[str, str] = {
    "ILUM_LED": "dome-lamp LED set",
    "ILUMWAVE": "LED wavelength (nm)",
    "ILUMPOWR": "LED power (mW)",
}

#: Keywords every quadrant-image extension carries.
RAW_IMAGE_KEYS: dict[str, str] = {
    "EXTNAME": "IMG_Qn",
    "CCD_ID": "CCD id 1-16",
    "QID": "readout quadrant 1-4",
    "RCID": "readout channel 0-63",
    "AMP_ID": "amplifier id 0-3",
    "GAIN": "gain (e-/DN)",
    "READNOI": "read noise (e-)",
    "DARKCUR": "dark current (e-/s)",
    "SATURATE": "saturation level (DN)",
    "INFOBITS": "quality bits (0 at acquisition)",
    "FLIPX": "raw readout reversed in x relative to the sky-oriented image",
    "FLIPY": "raw readout reversed in y relative to the sky-oriented image",
}

#: Keywords every overscan extension carries.
RAW_OVERSCAN_KEYS: dict[str, str] = {
    "EXTNAME": "OVS_Qn",
    "CCD_ID": "CCD id 1-16",
    "QID": "readout quadrant 1-4",
}

#: Every keyword the reference (ZTF_REFERENCE.md 1.7) names for raw files.
REFERENCE_RAW_KEYS = (
    "SATURATE",
    "INFOBITS",
    "SEEING",
    "GAIN",
    "READNOI",
    "DARKCUR",
    "EXPTIME",
    "OBSJD",
    "FILTER",
    "PIXSCALE",
)
