"""Survey schedule and per-exposure observing conditions at Palomar.

A night is a list of :class:`Exposure` records: 30 s exposures every 45 s from the end of evening
astronomical twilight, cycling through the requested fields with revisits and filter changes
(135 s), each with its seeing, transparency, sky brightness, airmass and pointing error.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import numpy as np
from astropy.coordinates import get_body
from astropy.time import Time

from zsds.core.fields import get_field, primary_fields
from zsds.core.instrument import (
    CADENCE,
    EXPTIME,
    FILTER_CHANGE_TIME,
    SITE_LAT_DEG,
    SITE_LON_DEG,
    Filter,
)
from zsds.core.naming import expid_of, filefracday, nid_of, parse_night

#: Atmospheric seeing at the zenith (arcsec): log-normal per night around SEEING_MEDIAN; each
#: exposure's seeing is that x airmass^0.6 x exp(N(0, 0.08)), kept within SEEING_RANGE. With the
#: optics (0.4-0.6" on axis) and the pixel, the rendered FWHM has median ~2.1 px and reaches
#: 1.2 px at the 0.7" floor (ZTF's best delivered image quality), 4.5 px at the ceiling.
SEEING_MEDIAN = 1.8
SEEING_NIGHT_SIGMA = 0.25
SEEING_RANGE = (0.7, 4.5)


def gmst_deg(mjd: np.ndarray | float) -> np.ndarray:
    """Greenwich mean sidereal time (deg), IAU 1982 linear form.

    Written by hand because astropy's sidereal time needs IERS tables for future dates, and
    0.1 s of time accuracy is far more than airmass and scheduling need.
    """
    d = np.asarray(mjd, float) - 51544.5
    return (280.46061837 + 360.98564736629 * d) % 360.0


def altitude_deg(ra: np.ndarray | float, dec: np.ndarray | float, mjd: np.ndarray | float):
    """Altitude (deg) of a sky position seen from Palomar."""
    lst = gmst_deg(mjd) + SITE_LON_DEG
    ha = np.deg2rad(lst - np.asarray(ra))
    lat = np.deg2rad(SITE_LAT_DEG)
    dec = np.deg2rad(np.asarray(dec))
    sin_alt = np.sin(lat) * np.sin(dec) + np.cos(lat) * np.cos(dec) * np.cos(ha)
    return np.rad2deg(np.arcsin(sin_alt))


def airmass(alt_deg: np.ndarray | float) -> np.ndarray:
    """Airmass from altitude (Pickering 2002), valid down to the horizon."""
    alt = np.asarray(alt_deg, float)
    return 1.0 / np.sin(np.deg2rad(alt + 244.0 / (165.0 + 47.0 * alt**1.1)))


def night_window(night: str | dt.date) -> tuple[float, float]:
    """(start, end) MJD of astronomical night (Sun below -18 deg) for a UT date at Palomar."""
    date = parse_night(night)
    mjd0 = Time(date.isoformat()).mjd
    grid = mjd0 + np.linspace(0.0, 0.75, 541)  # 00:00-18:00 UT, 2-minute steps
    sun = get_body("sun", Time(grid, format="mjd"))
    alt = altitude_deg(sun.ra.deg, sun.dec.deg, grid)
    dark = np.nonzero(alt < -18.0)[0]
    return float(grid[dark[0]]), float(grid[dark[-1]])


def moon_illumination(mjd: float) -> float:
    """Illuminated fraction of the Moon (0 new .. 1 full), from the synodic phase."""
    phase = ((mjd - 51550.26) / 29.530588) % 1.0  # days since a known new moon
    return float(0.5 * (1.0 - np.cos(2.0 * np.pi * phase)))


@dataclass(frozen=True)
class Exposure:
    """One scheduled science (or calibration) exposure and its conditions.

    Attributes
    ----------
    expid : int
    mjd : float
        Exposure start, UTC MJD.
    exptime : float
        Seconds.
    imgtype : str
        ``science``, ``bias`` or ``flat``.
    field : int
        ZTF field id (0 for calibration frames).
    filt : str
        g, r or i ('' for bias frames).
    programid : int
    ra, dec : float
        True pointing (field centre plus pointing error), deg.
    ra_nominal, dec_nominal : float
        Commanded pointing (the field centre), deg; written as TELRA/TELDEC.
    rotation : float
        Focal-plane rotation on the sky (deg).
    airmass, seeing, transparency, sky_mag : float
        Airmass at mid-exposure; FWHM of the atmospheric (Kolmogorov) PSF at the observed
        airmass (arcsec); transmission (1 = clear); sky brightness (mag / arcsec^2).
    psf_optics, psf_e, psf_theta : float
        FWHM of the optics on the optical axis (arcsec; focus and collimation of the
        exposure) and the tracking/wind ellipticity and its angle (rad); see
        :class:`zsds.sim.optics.FocalPlanePSF`.
    """

    expid: int
    mjd: float
    exptime: float
    imgtype: str
    field: int
    filt: str
    programid: int
    ra: float
    dec: float
    ra_nominal: float
    dec_nominal: float
    rotation: float
    airmass: float
    seeing: float
    transparency: float
    sky_mag: float
    psf_optics: float
    psf_e: float
    psf_theta: float

    @property
    def filter(self) -> Filter:
        return Filter.parse(self.filt)

    @property
    def filefracday(self) -> str:
        return filefracday(self.mjd)

    @property
    def mjd_mid(self) -> float:
        return self.mjd + 0.5 * self.exptime / 86400.0

    def to_dict(self) -> dict:
        return asdict(self)


def default_fields(night: str | dt.date, n: int, seed: int, n_exposures: int = 0) -> list[int]:
    """Primary-grid fields off the Galactic plane that are near the zenith while observed.

    The n fields closest to a point on the meridian (at the middle of the scheduled block) are
    chosen; the point drifts by only ~1 deg per night, so consecutive nights pick the same
    fields and build up a history. Deterministic in (night, n, seed).
    """
    start, _ = night_window(night)
    mid = start + 0.5 * n_exposures * CADENCE / 86400.0
    ra0 = (gmst_deg(mid) + SITE_LON_DEG) % 360.0
    dec0 = SITE_LAT_DEG + (seed % 7 - 3) * 3.0
    table = primary_fields()
    table = table[np.abs(table.gal_b) > 20.0]
    cosd = np.cos(np.deg2rad(table.dec.to_numpy()))
    dra = (table.ra.to_numpy() - ra0 + 180.0) % 360.0 - 180.0
    dist = np.hypot(dra * cosd, table.dec.to_numpy() - dec0)
    return sorted(int(f) for f in table.fieldid.to_numpy()[np.argsort(dist)[:n]])


def night_schedule(
    night: str | dt.date,
    n_exposures: int,
    fields: list[int] | None = None,
    filters: tuple[str, ...] = ("r", "g"),
    seed: int = 1,
    programid: int = 1,
) -> list[Exposure]:
    """Schedule a night of science exposures.

    The fields are visited in turn; each pass through the field list uses the next filter of
    ``filters`` (a filter change costs 135 s), so every field is revisited in each filter
    with ~``len(fields)`` x 45 s between visits, as in the ZTF public survey.

    Raises
    ------
    ValueError
        Unknown field ids, an invalid date, or more exposures than fit in the night.
    """
    date = parse_night(night)
    if n_exposures < 1:
        raise ValueError(f"number of exposures must be >= 1, got {n_exposures}")
    if fields is None or len(fields) == 0:
        fields = default_fields(date, max(1, min(8, n_exposures // 4)), seed, n_exposures)
    field_objs = [get_field(f) for f in fields]
    filts = [Filter.parse(f) for f in filters]
    start, end = night_window(date)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 12, nid_of(date)]))
    night_seeing = float(np.exp(rng.normal(np.log(SEEING_MEDIAN), SEEING_NIGHT_SIGMA)))
    cloudy = rng.random() < 0.1
    moon = moon_illumination(0.5 * (start + end))
    exposures = []
    t = start + 60.0 / 86400.0
    last_filter = None
    for k in range(n_exposures):
        fld = field_objs[k % len(field_objs)]
        filt = filts[(k // len(field_objs)) % len(filts)]
        if last_filter is not None and filt != last_filter:
            t += FILTER_CHANGE_TIME / 86400.0
        last_filter = filt
        if t + EXPTIME / 86400.0 > end:
            raise ValueError(
                f"{n_exposures} exposures do not fit in the night of {date} "
                f"(only {k} fit between MJD {start:.4f} and {end:.4f})"
            )
        mid = t + 0.5 * EXPTIME / 86400.0
        alt = float(altitude_deg(fld.ra, fld.dec, mid))
        x = float(airmass(max(alt, 5.0)))
        seeing = night_seeing * x**0.6 * float(np.exp(rng.normal(0.0, 0.08)))
        seeing = float(np.clip(seeing, *SEEING_RANGE))
        transp = float(np.clip(rng.uniform(0.6, 0.97), 0, 1)) if cloudy else 1.0
        sky = filt.props.sky_mag - 1.2 * moon * (1.0 if filt == Filter.g else 0.7) - 0.3 * (x - 1)
        dra, ddec = rng.normal(0.0, 3.0 / 3600.0, 2)
        exposures.append(
            Exposure(
                expid=expid_of(t),
                mjd=t,
                exptime=EXPTIME,
                imgtype="science",
                field=fld.fieldid,
                filt=filt.name,
                programid=programid,
                ra=(fld.ra + dra / max(np.cos(np.deg2rad(fld.dec)), 0.05)) % 360.0,
                dec=fld.dec + ddec,
                ra_nominal=fld.ra,
                dec_nominal=fld.dec,
                rotation=float(rng.normal(0.0, 0.005)),
                airmass=x,
                seeing=seeing,
                transparency=transp,
                sky_mag=float(sky + rng.normal(0.0, 0.05)),
                psf_optics=float(rng.uniform(0.4, 0.6)),
                psf_e=float(abs(rng.normal(0.0, 0.04))),
                psf_theta=float(rng.uniform(0, np.pi)),
            )
        )
        t += CADENCE / 86400.0
    return exposures


def calibration_schedule(
    night: str | dt.date,
    n_bias: int = 10,
    n_flat: int = 5,
    filters: tuple[str, ...] = ("g", "r", "i"),
) -> list[Exposure]:
    """Afternoon calibration sequence: bias frames then dome flats per filter, before sunset."""
    date = parse_night(night)
    # Afternoon, 00:30 UT: before sunset at Palomar all year and on the same UT date as the night.
    t = Time(date.isoformat()).mjd + 0.5 / 24.0
    exposures = []

    def add(imgtype: str, filt: str, exptime: float) -> None:
        nonlocal t
        exposures.append(
            Exposure(
                expid=expid_of(t),
                mjd=t,
                exptime=exptime,
                imgtype=imgtype,
                field=0,
                filt=filt,
                programid=0,
                ra=0.0,
                dec=0.0,
                ra_nominal=0.0,
                dec_nominal=0.0,
                rotation=0.0,
                airmass=1.0,
                seeing=0.0,
                transparency=1.0,
                sky_mag=0.0,
                psf_optics=0.0,
                psf_e=0.0,
                psf_theta=0.0,
            )
        )
        t += (exptime + 30.0) / 86400.0

    for _ in range(n_bias):
        add("bias", "", 0.0)
    for f in filters:
        Filter.parse(f)
        for _ in range(n_flat):
            add("flat", f, 10.0)
    return exposures


def survey_schedule(
    start: str | dt.date,
    n_nights: int,
    span_days: int,
    field: int,
    filt: str = "r",
    seed: int = 1,
    max_airmass: float = 1.8,
) -> list[Exposure]:
    """One exposure of ``field`` on each of ``n_nights`` nights drawn from ``span_days``.

    For light curves: the nights are a random subset of the span (as weather and the survey's
    field rotation give) and each exposure is taken at a random time while the field is
    above ``max_airmass``, so that periods near one day are not aliased by a fixed time of
    night. Deterministic in the arguments.

    Raises
    ------
    ValueError
        More nights than the span holds, or the field never rises above ``max_airmass``.
    """
    d0 = parse_night(start)
    if not 1 <= n_nights <= span_days:
        raise ValueError(f"need 1 <= n_nights <= span_days, got {n_nights}, {span_days}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 77, field, nid_of(d0)]))
    offsets = np.sort(rng.choice(span_days, n_nights, replace=False))
    out = []
    for off in offsets:
        night = d0 + dt.timedelta(days=int(off))
        start_mjd, end_mjd = night_window(night)
        n_fit = int((end_mjd - start_mjd) * 86400.0 / CADENCE) - 2
        sched = night_schedule(night, n_fit, [field], (filt,), seed)
        ok = [e for e in sched if e.airmass <= max_airmass]
        if not ok:
            raise ValueError(f"field {field} is never above airmass {max_airmass} on {night}")
        out.append(ok[int(rng.integers(len(ok)))])
    return out
