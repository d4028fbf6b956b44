"""Build, serialize and read ZTF alert packets (Avro Object Container Files).

A packet is one complete Avro OCF -- codec ``null``, the writer schema embedded, one
``ztf.alert`` record -- exactly as IPAC distributes them (``ZTF_REFERENCE.md`` section 4). The
functions here are pure: values in, dict or bytes out. Reading always uses the writer schema
embedded in the packet, which is what makes every real version (1.7 .. 4.01) readable: since
2022-10 nullable unions are written null-first, and old packets lack whole fields.

Cutouts (``cutoutScience``, ``cutoutTemplate``, ``cutoutDifference``) are gzip-compressed
single-HDU FITS files: 63x63 float32 (``BITPIX = -32``), ``BUNIT = 'DN'``, no WCS; stamps at a
quadrant edge are smaller. File names follow IPAC::

    candid<candid>_pid<pid>_targ_sci.fits.gz        science
    candid<candid>_ref.fits.gz                       template (reference)
    candid<candid>_pid<pid>_targ_scimref.fits.gz    difference, isdiffpos = t (sci - ref)
    candid<candid>_pid<pid>_targ_refmsci.fits.gz    difference, isdiffpos = f (ref - sci)
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import fastavro
import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning

from zsds.alerts.schema import load_alert_schema, record_fields, schema_version

#: Nominal cutout size (pixels) of ZTF stamps.
CUTOUT_SIZE = 63
#: Cutout keys accepted by :func:`build_alert`, with their alert field names.
CUTOUT_FIELDS = {
    "science": "cutoutScience",
    "template": "cutoutTemplate",
    "difference": "cutoutDifference",
}
#: Fields filled for a ``prv_candidate`` that is an upper limit (no detection, no candid), as
#: in the real v3.3/4.01 packets: the image description, its depth and photometric calibration.
UPPER_LIMIT_FIELDS = frozenset(
    {
        "jd", "fid", "pid", "diffmaglim", "pdiffimfilename", "programpi", "programid", "nid",
        "rcid", "field", "magzpsci", "magzpsciunc", "magzpscirms", "clrcoeff", "clrcounc",
        "rbversion",
    }
)  # fmt: skip
#: Publisher string of the real ZTF packets (ours default to "zsds").
ZTF_PUBLISHER = "ZTF (www.ztf.caltech.edu)"
#: ZTF's "none" value of catalogue-neighbour fields (``candidate`` records).
NONE_999 = -999.0
#: ``candidate`` fields that real packets fill with :data:`NONE_999` when there is no value:
#: the nearest source of the reference's PSF catalogue, the three nearest PS1 sources (a
#: magnitude PS1 lacks included), the nearest Gaia sources and the nearest known solar-system
#: object. zsds's own records keep null (NaN) there; :func:`ztf_candidate` converts.
NONE_999_FIELDS = frozenset(
    {"distnr", "magnr", "sigmagnr", "chinr", "sharpnr", "ranr", "decnr", "ssdistnr", "ssmagnr",
     "neargaia", "neargaiabright", "maggaia", "maggaiabright"}
    | {f"s{b}mag{k}" for b in "griz" for k in (1, 2, 3)}
    | {f"{name}{k}" for name in ("sgscore", "distpsnr", "objectidps") for k in (1, 2, 3)}
)
#: ``ssnamenr`` of a candidate with no known solar-system object near: a string in real packets.
SSNAMENR_NONE = "null"
#: Solar-system match fields: in previous detections (``prv_candidates`` with a ``candid``)
#: real packets leave them null when there was no match (not -999 / "null").
SS_FIELDS = ("ssdistnr", "ssmagnr", "ssnamenr")

_INT_TYPES = {"int", "long"}
_FLOAT_TYPES = {"float", "double"}
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


# --------------------------------------------------------------------------------------------
# Cutouts
# --------------------------------------------------------------------------------------------
def cutout_file_name(kind: str, candid: int, pid: int, isdiffpos: str = "t") -> str:
    """IPAC file name of a cutout.

    Parameters
    ----------
    kind
        ``science``, ``template`` or ``difference``.
    candid, pid
        Candidate and processed-image ids.
    isdiffpos
        ``t``/``1`` for a positive (sci - ref) difference, ``f``/``0`` for a negative one.
    """
    if kind == "science":
        return f"candid{candid}_pid{pid}_targ_sci.fits.gz"
    if kind == "template":
        return f"candid{candid}_ref.fits.gz"
    if kind == "difference":
        sign = "scimref" if str(isdiffpos).lower() in ("t", "1", "true") else "refmsci"
        return f"candid{candid}_pid{pid}_targ_{sign}.fits.gz"
    raise ValueError(f"unknown cutout kind {kind!r}: expected one of {', '.join(CUTOUT_FIELDS)}")


def make_cutout(stamp: np.ndarray, file_name: str) -> dict[str, Any]:
    """Pack a stamp as a ZTF ``cutout`` record.

    Parameters
    ----------
    stamp
        2-D image, nominally 63x63 (smaller at quadrant edges), in DN; NaN allowed. It is
        stored as float32.
    file_name
        ``fileName`` of the record, see :func:`cutout_file_name`.

    Returns
    -------
    dict
        ``{"fileName": file_name, "stampData": gzip(FITS)}``; the FITS file has a single
        primary HDU with ``BITPIX = -32``, ``BUNIT = 'DN'`` and no WCS.
    """
    try:
        data = np.asarray(stamp, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cutout {file_name!r}: not an image: {exc}") from exc
    if data.ndim != 2 or data.size == 0:
        raise ValueError(f"cutout {file_name!r}: expected a non-empty 2-D stamp, got {data.shape}")
    header = fits.Header()
    header["BUNIT"] = "DN"
    buf = io.BytesIO()
    fits.PrimaryHDU(data=data, header=header).writeto(buf)
    # mtime=0 keeps the packet bytes a function of the pixels only.
    return {"fileName": file_name, "stampData": gzip.compress(buf.getvalue(), mtime=0)}


def read_cutout(cutout: Mapping[str, Any]) -> np.ndarray:
    """Pixels of a ``cutout`` record as a native-endian float32 array (NaN preserved)."""
    raw = gzip.decompress(cutout["stampData"])
    with warnings.catch_warnings():
        # Older IPAC stamps write "SIMPLE  =  T" in free format; the data are fine.
        warnings.simplefilter("ignore", VerifyWarning)
        with fits.open(io.BytesIO(raw)) as hdul:
            return np.array(hdul[0].data, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------
def _split_type(avro_type: Any) -> tuple[bool, Any]:
    """``(nullable, base type)`` of an Avro field type (unions are at most ``null|T``)."""
    if isinstance(avro_type, list):
        others = [t for t in avro_type if t != "null"]
        base = others[0] if len(others) == 1 else others
        return "null" in avro_type, base
    return False, avro_type


def _is_missing(value: Any) -> bool:
    if value is None or value is np.ma.masked:
        return True
    try:
        return bool(isinstance(value, float | np.floating) and math.isnan(value))
    except TypeError:
        return False


def _cast(name: str, value: Any, base: Any) -> Any:
    """Cast one value to the Python type fastavro expects for ``base``."""
    if base in _INT_TYPES:
        if isinstance(value, bool | np.bool_):
            return int(value)
        if isinstance(value, float | np.floating):
            if not float(value).is_integer():
                raise ValueError(f"field {name!r} is {base} but got non-integral {value!r}")
        number = int(value)
        low, high = _INT32 if base == "int" else _INT64
        if not low <= number <= high:
            raise ValueError(f"field {name!r}: {number} does not fit an Avro {base}")
        return number
    if base in _FLOAT_TYPES:
        return float(value)
    if base == "string":
        if isinstance(value, bytes | np.bytes_):
            return bytes(value).decode()
        text = str(value)
        text.encode()  # Avro strings are UTF-8: refuse lone surrogates here, not at write
        return text
    if base == "boolean":
        return bool(value)
    if base == "bytes":
        return bytes(value)
    return value  # records and arrays: built by the caller


def fill_record(
    values: Mapping[str, Any], fields: Iterable[tuple[str, Any]], *, what: str = "record"
) -> dict[str, Any]:
    """Build a schema-conformant record from loosely typed values.

    Parameters
    ----------
    values
        Field values (numpy scalars, NaN, None are fine); keys not in ``fields`` are ignored.
    fields
        ``(name, avro type)`` pairs, e.g. from :func:`zsds.alerts.schema.record_fields`.
    what
        Record name used in error messages.

    Returns
    -------
    dict
        Every field of ``fields``, in schema order, cast to plain Python types; a missing or
        NaN value of a nullable field becomes ``None``.

    Raises
    ------
    ValueError
        If a non-nullable field is missing or NaN, or a value does not fit its type.
    """
    record: dict[str, Any] = {}
    for name, avro_type in fields:
        nullable, base = _split_type(avro_type)
        value = values.get(name)
        if not _is_missing(value):
            try:
                value = _cast(name, value, base)  # may give NaN, e.g. from "nan"
            except (TypeError, ValueError, OverflowError) as exc:
                raise ValueError(f"{what} field {name!r}: {exc}") from exc
        if _is_missing(value):
            if not nullable:
                raise ValueError(f"{what} field {name!r} ({base}) is required but missing or NaN")
            value = None
        record[name] = value
    return record


def _float_or_none(value: Any) -> float | None:
    """``float(value)``, or None if it is no number (:func:`fill_record` then says so)."""
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _is_upper_limit(values: Mapping[str, Any]) -> bool:
    return _is_missing(values.get("candid"))


def _is_str(value: Any, *choices: str) -> bool:
    return isinstance(value, str) and value in choices


def _significance(value: Any) -> Any:
    """``scorr`` as ZTF gives it: the detection's significance, positive also for a negative
    (``isdiffpos = f``) event, which IPAC detects on the negated difference image."""
    number = None if _is_missing(value) else _float_or_none(value)
    return value if number is None else abs(number)


def ztf_candidate(values: Mapping[str, Any]) -> dict[str, Any]:
    """The values of a triggering detection with ZTF's conventions applied.

    :data:`NONE_999_FIELDS` that are missing become -999, a missing ``ssnamenr`` becomes the
    string ``"null"``, and ``scorr`` is made positive. Other values are unchanged.
    """
    out = dict(values)
    for name in NONE_999_FIELDS:
        if _is_missing(out.get(name)):
            out[name] = NONE_999
    if _is_missing(out.get("ssnamenr")) or _is_str(out.get("ssnamenr"), ""):
        out["ssnamenr"] = SSNAMENR_NONE
    if "scorr" in out:
        out["scorr"] = _significance(out["scorr"])
    return out


def ztf_prv_detection(values: Mapping[str, Any]) -> dict[str, Any]:
    """The values of a previous detection with ZTF's conventions applied.

    Without a known solar-system object near (``ssnamenr`` missing or ``"null"``, or
    ``ssdistnr`` -999) the :data:`SS_FIELDS` are null, and ``scorr`` is made positive.
    """
    out = dict(values)
    name, dist = out.get("ssnamenr"), out.get("ssdistnr")
    if (_is_missing(name) or _is_str(name, "", SSNAMENR_NONE)
            or _is_missing(dist) or _float_or_none(dist) == NONE_999):
        for key in SS_FIELDS:
            out[key] = None
    if "scorr" in out:
        out["scorr"] = _significance(out["scorr"])
    return out


def build_alert(
    object_id: str,
    candidate: Mapping[str, Any],
    prv_candidates: list[Mapping[str, Any]] | None,
    cutouts: Mapping[str, np.ndarray | None] | None,
    schema: dict[str, Any] | None = None,
    publisher: str = "zsds",
    *,
    fp_hists: list[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Assemble one ``ztf.alert`` record.

    Parameters
    ----------
    object_id
        ``objectId`` (``ZTF`` + YY + 7 letters).
    candidate
        Values of the triggering detection (``candid``, ``pid``, ``isdiffpos``... required);
        ZTF's conventions are applied (:func:`ztf_candidate`: -999 for catalogue neighbours
        without a match, ``ssnamenr = "null"``, positive ``scorr``).
    prv_candidates
        Previous detections and upper limits (a record without ``candid`` is an upper limit:
        only :data:`UPPER_LIMIT_FIELDS` are kept, the rest is null; a detection goes through
        :func:`ztf_prv_detection`), or None.
    cutouts
        Stamps keyed ``science``, ``template``, ``difference``; a missing key or None gives a
        null cutout.
    schema
        Parsed alert schema (default :func:`zsds.alerts.schema.load_alert_schema`).
    publisher
        ``publisher`` field.
    fp_hists
        Forced-photometry history (schema >= 4.01), or None.

    Returns
    -------
    dict
        A record that :func:`serialize_alert` writes with ``schema``.
    """
    schema = load_alert_schema() if schema is None else schema
    cand = fill_record(ztf_candidate(candidate), record_fields(schema, "candidate"),
                       what="candidate")
    candid, pid = cand["candid"], cand["pid"]

    prv = None
    if prv_candidates is not None:
        prv_fields = record_fields(schema, "prv_candidate")
        prv = []
        for i, values in enumerate(prv_candidates):
            if _is_upper_limit(values):
                values = {k: v for k, v in values.items() if k in UPPER_LIMIT_FIELDS}
            else:
                values = ztf_prv_detection(values)
            prv.append(fill_record(values, prv_fields, what=f"prv_candidates[{i}]"))

    fph = None
    if fp_hists is not None:
        fp_fields = record_fields(schema, "fp_hist")
        fph = [fill_record(v, fp_fields, what=f"fp_hists[{i}]") for i, v in enumerate(fp_hists)]

    cutouts = cutouts or {}
    unknown = set(cutouts) - set(CUTOUT_FIELDS)
    if unknown:
        raise ValueError(f"unknown cutout keys {sorted(unknown)}: use {', '.join(CUTOUT_FIELDS)}")
    alert: dict[str, Any] = {
        "schemavsn": schema_version(schema),
        "publisher": publisher,
        "objectId": str(object_id),
        "candid": candid,
        "candidate": cand,
        "prv_candidates": prv,
        "fp_hists": fph,
    }
    for kind, field in CUTOUT_FIELDS.items():
        stamp = cutouts.get(kind)
        alert[field] = (
            None
            if stamp is None
            else make_cutout(stamp, cutout_file_name(kind, candid, pid, cand["isdiffpos"]))
        )
    # Keep exactly the schema's top-level fields (older schemas have no fp_hists).
    return {name: alert.get(name) for name, _ in record_fields(schema, "alert")}


# --------------------------------------------------------------------------------------------
# Avro container files
# --------------------------------------------------------------------------------------------
def _plain(node: Any) -> Any:
    """A parsed schema without fastavro's bookkeeping keys (``__fastavro_parsed``...)."""
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items() if not k.startswith("__")}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def embedded_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The writer schema as embedded in packets: a fresh dict with every key sorted.

    fastavro writes the schema dict it is given as the OCF's ``avro.schema``, key order
    included, and the order of a parsed schema depends on which fastavro modules were imported
    before it was parsed (a validator imported first reorders ``doc``/``default``). Sorting
    makes the header -- and so the packet bytes -- the same whichever code path writes it.
    """
    return json.loads(json.dumps(_plain(schema), sort_keys=True))


def serialize_alert(alert: Mapping[str, Any], schema: dict[str, Any] | None = None) -> bytes:
    """Write one alert as a complete Avro Object Container File (codec null, schema embedded).

    The record is validated against ``schema`` (every field, exact types). The embedded schema
    is :func:`embedded_schema` and the sync marker is derived from ``candid``, so the same
    alert always gives the same bytes, whatever the process and code path.

    Raises
    ------
    fastavro.validation.ValidationError
        If the record does not conform to the schema.
    """
    schema = load_alert_schema() if schema is None else schema
    marker = hashlib.blake2b(f"zsds-alert-{alert.get('candid')}".encode(), digest_size=16)
    buf = io.BytesIO()
    fastavro.writer(
        buf,
        embedded_schema(schema),
        [alert],
        codec="null",
        validator=True,
        strict=True,
        sync_marker=marker.digest(),
    )
    return buf.getvalue()


AlertSource = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]


def decode_alert_packet(source: AlertSource) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Decode an alert OCF with the writer schema embedded in it.

    Parameters
    ----------
    source
        A path, the packet bytes, or a binary file object.

    Returns
    -------
    records, writer_schema
        The records (one for a ZTF packet) and the parsed writer schema (its ``version``
        attribute tells the schema version even for 1.x packets without ``schemavsn``).
    """
    if isinstance(source, bytes | bytearray | memoryview):
        reader = fastavro.reader(io.BytesIO(bytes(source)))
        return list(reader), reader.writer_schema
    if isinstance(source, str | os.PathLike):
        with Path(source).open("rb") as fo:
            reader = fastavro.reader(fo)
            return list(reader), reader.writer_schema
    reader = fastavro.reader(source)
    return list(reader), reader.writer_schema


def read_alert_file(source: AlertSource) -> list[dict[str, Any]]:
    """Records of an alert OCF (path, bytes or file object), decoded with its writer schema."""
    return decode_alert_packet(source)[0]
