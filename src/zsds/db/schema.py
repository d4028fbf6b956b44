"""The operations/archive metadata schema, shared by every pipeline stage.

One SQLAlchemy 2.0 declarative model, portable between SQLite (the embedded default) and
PostgreSQL: surrogate keys are plain ``Integer`` (SQLite ``INTEGER PRIMARY KEY``, PostgreSQL
``SERIAL``), ZTF identifiers that exceed 32 bits (``pid``) are ``BigInteger``, free-form
documents use :class:`sqlalchemy.JSON`. Times of events are timezone-aware UTC datetimes;
validity ranges of calibrations are MJD floats. See ``docs/ingest.md`` for a column reference.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> dt.datetime:
    """Current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    """Declarative base of every zsds table."""

    type_annotation_map = {  # noqa: RUF012
        dt.datetime: DateTime(timezone=True),
        dict[str, Any]: JSON,
    }


class SchemaVersion(Base):
    """Version of the schema the database holds (one row)."""

    __tablename__ = "schema_version"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    applied_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Exposure(Base):
    """One camera exposure (all 16 CCD files share it)."""

    __tablename__ = "exposures"

    expid: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    mjd: Mapped[float] = mapped_column(Float, index=True)
    field: Mapped[int] = mapped_column(Integer, index=True)
    fid: Mapped[int] = mapped_column(Integer)
    imgtype: Mapped[str] = mapped_column(String(16))
    programid: Mapped[int] = mapped_column(Integer)
    exptime: Mapped[float] = mapped_column(Float)
    airmass: Mapped[float | None] = mapped_column(Float)
    ra: Mapped[float | None] = mapped_column(Float)
    dec: Mapped[float | None] = mapped_column(Float)
    filefracday: Mapped[str] = mapped_column(String(14), index=True)
    night: Mapped[dt.date] = mapped_column(Date, index=True)
    nid: Mapped[int] = mapped_column(Integer, index=True)


class RawFile(Base):
    """One archived raw CCD file."""

    __tablename__ = "raw_files"
    __table_args__ = (UniqueConstraint("expid", "ccdid", name="uq_raw_files_expid_ccdid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    expid: Mapped[int] = mapped_column(BigInteger, ForeignKey("exposures.expid"), index=True)
    ccdid: Mapped[int] = mapped_column(Integer)
    relpath: Mapped[str] = mapped_column(String(255), unique=True)
    filename: Mapped[str] = mapped_column(String(128), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    ingested_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="ok")


class QuadrantProduct(Base):
    """One product file of one readout quadrant of an exposure (image, mask, catalog...)."""

    __tablename__ = "quadrant_products"
    __table_args__ = (UniqueConstraint("pid", "kind", name="uq_quadrant_products_pid_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pid: Mapped[int] = mapped_column(BigInteger, index=True)
    expid: Mapped[int] = mapped_column(BigInteger, ForeignKey("exposures.expid"), index=True)
    ccdid: Mapped[int] = mapped_column(Integer)
    qid: Mapped[int] = mapped_column(Integer)
    rcid: Mapped[int] = mapped_column(Integer)
    field: Mapped[int] = mapped_column(Integer, index=True)
    fid: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    relpath: Mapped[str] = mapped_column(String(255), unique=True)
    infobits: Mapped[int] = mapped_column(BigInteger, default=0)
    seeing: Mapped[float | None] = mapped_column(Float)
    maglim: Mapped[float | None] = mapped_column(Float)
    magzp: Mapped[float | None] = mapped_column(Float)
    magzpunc: Mapped[float | None] = mapped_column(Float)
    clrcoeff: Mapped[float | None] = mapped_column(Float)
    nsources: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CalibProduct(Base):
    """A calibration product (bias, high-frequency flat) of one quadrant with its validity."""

    __tablename__ = "calib_products"
    __table_args__ = (
        Index("ix_calib_products_lookup", "kind", "filtercode", "ccdid", "qid", "valid_from"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    filtercode: Mapped[str] = mapped_column(String(4))
    ccdid: Mapped[int] = mapped_column(Integer)
    qid: Mapped[int] = mapped_column(Integer)
    night: Mapped[dt.date] = mapped_column(Date)
    valid_from: Mapped[float] = mapped_column(Float)
    valid_to: Mapped[float] = mapped_column(Float)
    relpath: Mapped[str] = mapped_column(String(255), unique=True)
    qa: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class QAMetric(Base):
    """One named QA value about a subject (``subject_kind`` e.g. exposure, quadrant, calib)."""

    __tablename__ = "qa_metrics"
    __table_args__ = (
        UniqueConstraint("subject_kind", "subject_id", "name", name="uq_qa_metrics_subject_name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_kind: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float | None] = mapped_column(Float)


class Job(Base):
    """One unit of pipeline work, unique by ``(stage, key)``."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("stage", "key", name="uq_jobs_stage_key"),
        Index("ix_jobs_stage_state", "stage", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer)  # process id while running (schema v9)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    inputs: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Quarantine(Base):
    """One rejected input file, kept under ``HOME/quarantine``."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    filename: Mapped[str] = mapped_column(String(255), index=True)
    relpath: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(String(32), index=True)
    message: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Reference(Base):
    """One version of a reference (template) image of a field/CCD/quadrant/filter.

    ``rfid = field * 1_000_000 + fid * 100_000 + version * 100 + rcid`` (see ``docs/refs.md``).
    Added in schema version 2.
    """

    __tablename__ = "references"
    __table_args__ = (
        UniqueConstraint("field", "ccdid", "qid", "fid", "version", name="uq_references_version"),
        Index("ix_references_lookup", "field", "ccdid", "qid", "fid"),
    )

    rfid: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    field: Mapped[int] = mapped_column(Integer)
    ccdid: Mapped[int] = mapped_column(Integer)
    qid: Mapped[int] = mapped_column(Integer)
    fid: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)
    nframes: Mapped[int] = mapped_column(Integer)
    jdstart: Mapped[float] = mapped_column(Float)
    jdend: Mapped[float] = mapped_column(Float)
    input_pids: Mapped[list[int]] = mapped_column(JSON)
    relpath: Mapped[str] = mapped_column(String(255), unique=True)
    maglim: Mapped[float | None] = mapped_column(Float)
    seeing: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


#: Every table of the current schema.
TABLES = tuple(t.name for t in Base.metadata.sorted_tables)


class DiffImageRecord(Base):
    """One difference image (science minus reference) of a quadrant. Added in schema v3.

    Its footprint (``ra``, ``dec``, ``radius``) and ``diffmaglim`` give the upper limits of the
    alert history (``prv_candidates``) at positions it covered without a detection.
    """

    __tablename__ = "diff_images"
    __table_args__ = (Index("ix_diff_images_cover", "field", "rcid", "jd"),)

    pid: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    expid: Mapped[int] = mapped_column(BigInteger, index=True)
    nid: Mapped[int] = mapped_column(Integer, index=True)
    field: Mapped[int] = mapped_column(Integer)
    ccdid: Mapped[int] = mapped_column(Integer)
    qid: Mapped[int] = mapped_column(Integer)
    rcid: Mapped[int] = mapped_column(Integer)
    fid: Mapped[int] = mapped_column(Integer)
    programid: Mapped[int] = mapped_column(Integer)
    jd: Mapped[float] = mapped_column(Float)
    rfid: Mapped[int] = mapped_column(BigInteger)
    ra: Mapped[float] = mapped_column(Float)
    dec: Mapped[float] = mapped_column(Float)
    radius: Mapped[float] = mapped_column(Float)
    diffmaglim: Mapped[float | None] = mapped_column(Float)
    magzp: Mapped[float | None] = mapped_column(Float)
    relpath: Mapped[str] = mapped_column(String(255))
    ncand: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Candidate(Base):
    """One event on a difference image (|Scorr| >= 5). Added in schema v3.

    ``candid = pid * 1_000_000 + n`` (``n`` the event's rank on its image). The key columns are
    indexed; ``record`` holds every ZTF ``candidate`` field for the alert packet.
    """

    __tablename__ = "candidates"
    __table_args__ = (Index("ix_candidates_pos", "dec", "ra"),)

    candid: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    pid: Mapped[int] = mapped_column(BigInteger, ForeignKey("diff_images.pid"), index=True)
    object_id: Mapped[str | None] = mapped_column(String(16), index=True)
    jd: Mapped[float] = mapped_column(Float, index=True)
    nid: Mapped[int] = mapped_column(Integer, index=True)
    fid: Mapped[int] = mapped_column(Integer)
    field: Mapped[int] = mapped_column(Integer)
    rcid: Mapped[int] = mapped_column(Integer)
    programid: Mapped[int] = mapped_column(Integer)
    ra: Mapped[float] = mapped_column(Float)
    dec: Mapped[float] = mapped_column(Float)
    isdiffpos: Mapped[str] = mapped_column(String(1))
    magpsf: Mapped[float | None] = mapped_column(Float)
    sigmapsf: Mapped[float | None] = mapped_column(Float)
    scorr: Mapped[float] = mapped_column(Float)
    rb: Mapped[float | None] = mapped_column(Float)
    passed: Mapped[bool] = mapped_column(default=False)
    record: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Known solar-system object within 30" (schema v6; also in ``record``).
    ssnamenr: Mapped[str | None] = mapped_column(String(32), index=True)


class AstroObject(Base):
    """A position with one or more candidates within 1.5": ZTF's ``objectId``. Schema v3."""

    __tablename__ = "objects"
    __table_args__ = (Index("ix_objects_pos", "dec", "ra"),)

    object_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    ra: Mapped[float] = mapped_column(Float)
    dec: Mapped[float] = mapped_column(Float)
    ndet: Mapped[int] = mapped_column(Integer, default=0)
    jdstart: Mapped[float] = mapped_column(Float)
    jdend: Mapped[float] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ObjectCounter(Base):
    """Next object-name counter of each two-digit year (names are ZTF + YY + 7 letters)."""

    __tablename__ = "object_counters"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    next: Mapped[int] = mapped_column(BigInteger, default=0)


class AlertRecord(Base):
    """An alert packet made for a candidate: where it was archived and whether Kafka has it."""

    __tablename__ = "alerts"

    candid: Mapped[int] = mapped_column(BigInteger, ForeignKey("candidates.candid"),
                                        primary_key=True, autoincrement=False)
    object_id: Mapped[str] = mapped_column(String(16), index=True)
    topic: Mapped[str] = mapped_column(String(64), index=True)
    relpath: Mapped[str] = mapped_column(String(255))
    nbytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: Last delivery to any Kafka cluster (``alert_deliveries`` holds each cluster's).
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    sent_to: Mapped[str | None] = mapped_column(String(255))


class AlertDelivery(Base):
    """An archived packet delivered to one topic of one Kafka cluster (schema v11, issue 20).

    Keyed by the broker cluster's id, so a new (or wiped and restarted) cluster gets every
    packet while sending to the same one again is a no-op; ``sha256`` is the digest of the
    bytes delivered (a packet rebuilt since with other bytes is reported, and sent only on
    request). No foreign key: a delivery stays recorded while its candidate is re-processed.
    """

    __tablename__ = "alert_deliveries"

    candid: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    cluster_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    topic: Mapped[str] = mapped_column(String(64), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    bootstrap: Mapped[str] = mapped_column(String(255))
    sent_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ConfigRecord(Base):
    """A pipeline configuration some product was made with (schema v12, issue 21).

    ``hash`` is the ``CFGHASH`` the products' headers carry (the first 16 hex digits of the
    SHA-256 of ``json``, :meth:`zsds.config.PipelineConfig.config_hash`); ``json`` the
    configuration as canonical JSON (sorted keys), exactly the text that was hashed.
    ``zsds config show --hash H`` prints it.
    """

    __tablename__ = "configs"

    hash: Mapped[str] = mapped_column(String(16), primary_key=True)
    json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class NightSummaryRecord(Base):
    """The summary of one run of the executive over a night (schema v4)."""

    __tablename__ = "night_summaries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    night: Mapped[dt.date] = mapped_column(Date, index=True)
    mode: Mapped[str] = mapped_column(String(16))
    quadrants: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)
    alerts: Mapped[int] = mapped_column(Integer)
    wall_s: Mapped[float] = mapped_column(Float)
    latency_p50_s: Mapped[float | None] = mapped_column(Float)
    latency_p95_s: Mapped[float | None] = mapped_column(Float)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class LightCurveObject(Base):
    """One light-curve object of a matchfile, by ZTF DR ``oid`` (schema v5).

    The searchable summary of pipeline 8: position, identifiers and the headline metrics of
    one object of one field/CCD-quadrant/filter (the full set stays in the matchfile).
    ``healpix29`` is the HEALPix nested order-29 index of (``ra``, ``dec``), the column HATS
    catalogues call ``_healpix_29``; cone searches read it through its B-tree index as a few
    index ranges (see :mod:`zsds.lightcurves.search`).
    """

    __tablename__ = "lc_objects"
    __table_args__ = (Index("ix_lc_objects_quadrant", "field", "rcid", "fid"),)

    # INTEGER (not BIGINT) on SQLite makes the key the rowid (64-bit there): one B-tree less,
    # and ON CONFLICT(oid) probes the table itself.
    oid: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                     primary_key=True, autoincrement=False)
    field: Mapped[int] = mapped_column(Integer)
    rcid: Mapped[int] = mapped_column(Integer)
    ccdid: Mapped[int] = mapped_column(Integer)
    qid: Mapped[int] = mapped_column(Integer)
    fid: Mapped[int] = mapped_column(Integer)
    matchid: Mapped[int] = mapped_column(Integer)
    kind: Mapped[int] = mapped_column(SmallInteger)  # 0: reference-catalogue source, 1: transient
    ra: Mapped[float] = mapped_column(Float)
    dec: Mapped[float] = mapped_column(Float)
    healpix29: Mapped[int] = mapped_column(BigInteger, index=True)
    refmag: Mapped[float | None] = mapped_column(Float)
    medianmag: Mapped[float | None] = mapped_column(Float)
    meanmag: Mapped[float | None] = mapped_column(Float)
    magrms: Mapped[float | None] = mapped_column(Float)
    chisq: Mapped[float | None] = mapped_column(Float)
    stetsonj: Mapped[float | None] = mapped_column(Float)
    vonneumannratio: Mapped[float | None] = mapped_column(Float)
    period: Mapped[float | None] = mapped_column(Float)
    periodpower: Mapped[float | None] = mapped_column(Float)
    amplitude: Mapped[float | None] = mapped_column(Float)
    nobs: Mapped[int | None] = mapped_column(Integer)
    ngoodobs: Mapped[int | None] = mapped_column(Integer)
    mjdmin: Mapped[float | None] = mapped_column(Float)
    mjdmax: Mapped[float | None] = mapped_column(Float)
    matchfile: Mapped[str | None] = mapped_column(String(255))  # relative to the home


class MatchfileRecord(Base):
    """One matchfile (field, CCD quadrant, filter) built by pipeline 8 (schema v5)."""

    __tablename__ = "matchfiles"
    __table_args__ = (UniqueConstraint("field", "rcid", "fid", name="uq_matchfiles_quadrant"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    field: Mapped[int] = mapped_column(Integer)
    rcid: Mapped[int] = mapped_column(Integer)
    ccdid: Mapped[int] = mapped_column(Integer)
    qid: Mapped[int] = mapped_column(Integer)
    fid: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(255))  # relative to the home
    nexposures: Mapped[int] = mapped_column(Integer)
    nsources: Mapped[int] = mapped_column(Integer)
    ntransients: Mapped[int] = mapped_column(Integer)
    npoints: Mapped[int] = mapped_column(Integer)
    reference_pid: Mapped[int | None] = mapped_column(BigInteger)
    built_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    qa: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class StreakRecord(Base):
    """A streak (trailed fast mover) found on a difference image (schema v6).

    ``streakid = pid * 1000 + n`` (``n`` the streak's rank on its image), so re-running an
    image replaces its rows. Positions are the fitted end points at the start and end of the
    exposure and the midpoint at mid-exposure; ``record`` holds every measured feature.
    """

    __tablename__ = "streaks"
    __table_args__ = (Index("ix_streaks_pos", "dec", "ra"),)

    streakid: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    pid: Mapped[int] = mapped_column(BigInteger, ForeignKey("diff_images.pid"), index=True)
    expid: Mapped[int] = mapped_column(BigInteger, index=True)
    nid: Mapped[int] = mapped_column(Integer, index=True)
    jd: Mapped[float] = mapped_column(Float)  # mid-exposure
    field: Mapped[int] = mapped_column(Integer)
    rcid: Mapped[int] = mapped_column(Integer)
    fid: Mapped[int] = mapped_column(Integer)
    ra: Mapped[float] = mapped_column(Float)  # midpoint
    dec: Mapped[float] = mapped_column(Float)
    ra0: Mapped[float] = mapped_column(Float)
    dec0: Mapped[float] = mapped_column(Float)
    ra1: Mapped[float] = mapped_column(Float)
    dec1: Mapped[float] = mapped_column(Float)
    length: Mapped[float] = mapped_column(Float)  # arcsec
    pa: Mapped[float] = mapped_column(Float)  # deg, position angle east of north, [0, 180)
    rate: Mapped[float] = mapped_column(Float)  # deg/day (length / exposure time)
    mag: Mapped[float | None] = mapped_column(Float)
    sigmamag: Mapped[float | None] = mapped_column(Float)
    snr: Mapped[float] = mapped_column(Float)
    rb: Mapped[float | None] = mapped_column(Float)
    ssnamenr: Mapped[str | None] = mapped_column(String(32), index=True)
    ssdistnr: Mapped[float | None] = mapped_column(Float)
    record: Mapped[dict[str, Any]] = mapped_column(JSON)


class SSTrack(Base):
    """A moving-object track: linked detections over several nights with a fitted orbit
    (schema v6).

    ``trksub`` is the temporary designation used in MPC/ADES reports (``z`` + the base-36 night
    id of the window's last night + the base-36 rank), so re-linking a window gives the same
    names. ``designation`` is the known object the track belongs to (majority of its members'
    ``ssnamenr``), or None for a new object. Orbit elements follow :class:`zsds.solar.Orbits`
    (ecliptic J2000, epoch MJD TDB).
    """

    __tablename__ = "ss_tracks"

    track_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trksub: Mapped[str] = mapped_column(String(7), unique=True)
    window_end: Mapped[int] = mapped_column(Integer, index=True)  # nid of the last night
    window_nights: Mapped[int] = mapped_column(Integer)
    designation: Mapped[str | None] = mapped_column(String(32), index=True)
    ndet: Mapped[int] = mapped_column(Integer)
    nnights: Mapped[int] = mapped_column(Integer)
    jdstart: Mapped[float] = mapped_column(Float)
    jdend: Mapped[float] = mapped_column(Float)
    ra: Mapped[float] = mapped_column(Float)  # first detection
    dec: Mapped[float] = mapped_column(Float)
    rms: Mapped[float | None] = mapped_column(Float)  # orbit-fit residual rms, arcsec
    orbit_ok: Mapped[bool] = mapped_column(default=False)
    a: Mapped[float | None] = mapped_column(Float)
    e: Mapped[float | None] = mapped_column(Float)
    inc: Mapped[float | None] = mapped_column(Float)
    node: Mapped[float | None] = mapped_column(Float)
    argperi: Mapped[float | None] = mapped_column(Float)
    mean_anomaly: Mapped[float | None] = mapped_column(Float)
    epoch: Mapped[float | None] = mapped_column(Float)
    H: Mapped[float | None] = mapped_column(Float)
    fit: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SSTrackMember(Base):
    """One detection (a candidate) of a moving-object track (schema v6)."""

    __tablename__ = "ss_track_members"

    track_id: Mapped[int] = mapped_column(Integer, ForeignKey("ss_tracks.track_id",
                                                              ondelete="CASCADE"),
                                          primary_key=True)
    candid: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False,
                                        index=True)
    jd: Mapped[float] = mapped_column(Float)
    ra: Mapped[float] = mapped_column(Float)
    dec: Mapped[float] = mapped_column(Float)
    rejected: Mapped[bool] = mapped_column(default=False)  # outlier of the orbit fit


class ArchiveImage(Base):
    """One searchable image of the archive (schema v7): a row of IRSA's ``ztf.ztf_current_meta_*``.

    ``tbl`` is the IBE table the image belongs to: ``sci`` (one calibrated quadrant), ``raw``
    (one raw CCD file), ``ref`` (a reference image) or ``cal`` (a bias or high-frequency flat).
    The footprint is the image centre (``ra``, ``dec``), its four corners (``ra1``..``dec4``,
    IRSA's order: pixel corners (1,1), (NAXIS1,1), (NAXIS1,NAXIS2), (1,NAXIS2)) and a
    declination band plus an RA interval (``ramin`` > ``ramax`` where it wraps through 0) used
    as an indexed prefilter before the exact polygon test. Rows are derived from the pipeline's
    own tables and FITS headers by :func:`zsds.archive.index.update_index`, so the index can
    always be rebuilt.
    """

    __tablename__ = "archive_images"
    __table_args__ = (
        Index("ix_archive_images_tbl_dec", "tbl", "decmin", "decmax"),
        Index("ix_archive_images_tbl_field", "tbl", "field", "rcid", "fid"),
        Index("ix_archive_images_tbl_jd", "tbl", "obsjd"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tbl: Mapped[str] = mapped_column(String(8))
    relpath: Mapped[str] = mapped_column(String(255), unique=True)
    field: Mapped[int | None] = mapped_column(Integer)
    ccdid: Mapped[int] = mapped_column(Integer)
    qid: Mapped[int | None] = mapped_column(Integer)
    rcid: Mapped[int | None] = mapped_column(Integer)
    fid: Mapped[int | None] = mapped_column(Integer)
    filtercode: Mapped[str | None] = mapped_column(String(4))
    imgtypecode: Mapped[str | None] = mapped_column(String(2))
    pid: Mapped[int | None] = mapped_column(BigInteger, index=True)
    expid: Mapped[int | None] = mapped_column(BigInteger)
    nid: Mapped[int | None] = mapped_column(Integer)
    rfid: Mapped[int | None] = mapped_column(BigInteger)
    nframes: Mapped[int | None] = mapped_column(Integer)
    caltype: Mapped[str | None] = mapped_column(String(16))
    nightdate: Mapped[int | None] = mapped_column(Integer)
    filefracday: Mapped[int | None] = mapped_column(BigInteger)
    obsjd: Mapped[float | None] = mapped_column(Float)  # exposure start; refs/cal: first input
    endjd: Mapped[float | None] = mapped_column(Float)  # refs/cal: last input
    exptime: Mapped[float | None] = mapped_column(Float)
    seeing: Mapped[float | None] = mapped_column(Float)
    airmass: Mapped[float | None] = mapped_column(Float)
    maglimit: Mapped[float | None] = mapped_column(Float)
    magzp: Mapped[float | None] = mapped_column(Float)
    infobits: Mapped[int] = mapped_column(BigInteger, default=0)
    programid: Mapped[int | None] = mapped_column(Integer)
    ra: Mapped[float | None] = mapped_column(Float)
    dec: Mapped[float | None] = mapped_column(Float)
    ra1: Mapped[float | None] = mapped_column(Float)
    dec1: Mapped[float | None] = mapped_column(Float)
    ra2: Mapped[float | None] = mapped_column(Float)
    dec2: Mapped[float | None] = mapped_column(Float)
    ra3: Mapped[float | None] = mapped_column(Float)
    dec3: Mapped[float | None] = mapped_column(Float)
    ra4: Mapped[float | None] = mapped_column(Float)
    dec4: Mapped[float | None] = mapped_column(Float)
    crpix1: Mapped[float | None] = mapped_column(Float)
    crpix2: Mapped[float | None] = mapped_column(Float)
    crval1: Mapped[float | None] = mapped_column(Float)
    crval2: Mapped[float | None] = mapped_column(Float)
    cd11: Mapped[float | None] = mapped_column(Float)
    cd12: Mapped[float | None] = mapped_column(Float)
    cd21: Mapped[float | None] = mapped_column(Float)
    cd22: Mapped[float | None] = mapped_column(Float)
    ramin: Mapped[float | None] = mapped_column(Float)
    ramax: Mapped[float | None] = mapped_column(Float)
    decmin: Mapped[float | None] = mapped_column(Float)
    decmax: Mapped[float | None] = mapped_column(Float)
    # Added in schema v8: the sky conditions and pointing of IRSA's meta tables (MOONILLF,
    # TELRA, TELDEC of the headers; sci and raw rows only).
    moonillf: Mapped[float | None] = mapped_column(Float)
    telra: Mapped[float | None] = mapped_column(Float)
    teldec: Mapped[float | None] = mapped_column(Float)
    restricted: Mapped[bool] = mapped_column(default=False)
    indexed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class User(Base):
    """An archive account (schema v7), created by ``zsds users add``. Passwords are stored as
    scrypt hashes (:mod:`zsds.archive.auth`), never in clear."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(128), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(default=False)
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """A bearer token or a login session of a user (schema v7). Only the SHA-256 of the token
    is stored; ``kind`` is ``api`` (made by ``zsds users token``) or ``session`` (a login
    cookie)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id", ondelete="CASCADE"),
                                         index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="api")
    name: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ForcedPhotRequest(Base):
    """One forced-photometry request of the archive's ZFPS-compatible service (schema v7).

    The light curve is measured on every archived difference image covering (``ra``, ``dec``)
    with ``jdstart <= jd <= jdend`` and written to ``relpath`` (relative to the home) in the
    ZFPS ``lc.txt`` format. ``exitcode`` 0 means done, None still pending or running.
    """

    __tablename__ = "forcedphot_requests"

    reqid: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("users.id",
                                                                    ondelete="SET NULL"),
                                                index=True)
    ra: Mapped[float] = mapped_column(Float)
    dec: Mapped[float] = mapped_column(Float)
    jdstart: Mapped[float | None] = mapped_column(Float)
    jdend: Mapped[float | None] = mapped_column(Float)
    created: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    ended: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    exitcode: Mapped[int | None] = mapped_column(Integer)
    npoints: Mapped[int | None] = mapped_column(Integer)
    relpath: Mapped[str | None] = mapped_column(String(255))
    message: Mapped[str | None] = mapped_column(Text)


class LoginFailure(Base):
    """A failed archive login (schema v13), counted by the login throttle
    (:class:`zsds.archive.security.LoginThrottle`) for one key: ``user:NAME`` or
    ``client:ADDRESS``. In the database so that every worker process of ``zsds serve``
    counts the same failures; rows older than the throttle's window are deleted."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), index=True)
    at: Mapped[float] = mapped_column(Float, index=True)  # Unix time (s)


class LoginLockout(Base):
    """A user name or client address refused logins until ``until`` (Unix time, s; schema
    v13), set by the login throttle when its failures pass the limit."""

    __tablename__ = "login_lockouts"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    until: Mapped[float] = mapped_column(Float)


class TapJob(Base):
    """An asynchronous TAP (UWS) job of the archive service (schema v10).

    Jobs live in the database, so they survive a restart of ``zsds serve`` and are shared by
    its workers. ``owner`` is the user name of the creator (None: created anonymously, then
    ``client`` holds the creator's address, for per-address quotas); only the owner sees a
    user's job. ``params`` keeps the TAP parameters of the job only (bounded in number and
    size); ``result`` the finished result document, deleted with the job.
    """

    __tablename__ = "tap_jobs"
    __table_args__ = (Index("ix_tap_jobs_owner_created", "owner", "created"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(128))
    client: Mapped[str | None] = mapped_column(String(64), index=True)
    phase: Mapped[str] = mapped_column(String(16), default="PENDING")
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    created: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    ended: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    destruction: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    execution_duration: Mapped[int] = mapped_column(Integer, default=600)
    media: Mapped[str | None] = mapped_column(String(64))
    result: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    error: Mapped[str | None] = mapped_column(Text)
