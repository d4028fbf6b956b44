"""How real are zsds's alert packets? Field-by-field statistics compared with real ZTF alerts.

:func:`packet_stats` reduces a set of decoded packets to one row per field (``candidate.*``,
previous detections ``prv_det.*``, upper limits ``prv_ul.*``, forced photometry ``fp_hist.*``):
how often it is null, the ZTF "none" sentinels -999 / -99999 or the string ``"null"``, whether
it is constant, its range; plus packet-level figures (sizes, history lengths, cutout shapes and
NaN pixels). :func:`compare` puts two such summaries side by side and names what differs;
:func:`always_null_fields` is the list the realism bar of issue 20 wants empty: fields that
every real v4 alert fills and that zsds never does.

Everything here but :func:`read_packets` (which reads files, folders and tarballs) is pure:
decoded records in, tables and lines out; ``zsds eval alerts`` prints them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from zsds.alerts.archive import iter_archive
from zsds.alerts.packet import CUTOUT_FIELDS, decode_alert_packet, read_cutout

__all__ = [
    "KNOWN_GAPS",
    "PacketSummary",
    "always_null_fields",
    "compare",
    "is_v4",
    "packet_stats",
    "read_packets",
    "report_lines",
    "summarize_packets",
]

#: Numeric values ZTF writes for "none" (catalogue neighbours; forced photometry).
SENTINELS = (-999.0, -99999.0)
#: Record groups of a packet, in display order.
GROUPS = ("alert", "candidate", "prv_det", "prv_ul", "fp_hist")
#: Nominal cutout size (pixels).
STAMP = 63
#: Fields that real v4 packets always fill and zsds does not yet, with the reason (printed by
#: ``zsds eval alerts`` next to the field; ``docs/products/alerts.md`` explains them).
KNOWN_GAPS: dict[str, str] = {}
#: Identifiers, times and positions: their ranges say where and when, not how real.
IDENTITY_FIELDS = frozenset(
    {"candid", "pid", "nid", "field", "rcid", "rfid", "tblid", "jd", "jdstarthist",
     "jdendhist", "jdstartref", "jdendref", "ra", "dec", "ranr", "decnr", "xpos", "ypos",
     "objectidps1", "objectidps2", "objectidps3"}
)
#: Fields that describe the observation (exposure, image, calibration, software version): a
#: single night of one field has one value of each, so "constant" says nothing there.
OBSERVATION_FIELDS = frozenset(
    {"jd", "fid", "pid", "nid", "field", "rcid", "programid", "programpi", "exptime", "rfid",
     "jdstartref", "jdendref", "nframesref", "rbversion", "drbversion", "tooflag", "magzpsci",
     "magzpsciunc", "magzpscirms", "nmatches", "clrcoeff", "clrcounc", "zpclrcov", "zpmed",
     "clrmed", "clrrms", "diffmaglim", "pdiffimfilename", "jdendhist"}
)


@dataclass
class PacketSummary:
    """Statistics of a set of packets.

    Attributes
    ----------
    n : int
        Number of packets.
    versions : dict
        Schema version -> number of packets.
    fields : pandas.DataFrame
        One row per ``group.field`` (index), see :func:`packet_stats`.
    packets : pandas.DataFrame
        One row per packet: ``nbytes``, ``n_det``, ``n_ul``, ``n_fp``, ``stamp_nan`` (fraction
        of NaN pixels over the three stamps), ``stamp_any_nan``, ``stamp_full`` (all three
        63x63), ``version``.
    """

    n: int
    versions: dict[str, int]
    fields: pd.DataFrame
    packets: pd.DataFrame = field(default_factory=pd.DataFrame)


def _version(alert: Mapping[str, Any], writer_version: str | None) -> str:
    return str(alert.get("schemavsn") or writer_version or "?")


def _records(alert: Mapping[str, Any]) -> Iterable[tuple[str, Mapping[str, Any]]]:
    """``(group, record)`` pairs of one alert."""
    yield "alert", {k: v for k, v in alert.items()
                    if not isinstance(v, dict | list) and k not in CUTOUT_FIELDS.values()}
    yield "candidate", alert.get("candidate") or {}
    for prv in alert.get("prv_candidates") or []:
        if "forcediffimflux" in prv:  # v3.5 test packets carried forced photometry here
            yield "fp_hist", prv
        else:
            yield ("prv_det" if prv.get("candid") is not None else "prv_ul"), prv
    for fp in alert.get("fp_hists") or []:
        yield "fp_hist", fp


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return "nullstr" if value == "null" else "str"
    if isinstance(value, bool):
        return "num"
    if isinstance(value, int | float):
        if isinstance(value, float) and math.isnan(value):
            return "nan"
        return "sentinel" if float(value) in SENTINELS else "num"
    return "other"


def _stamp_figures(alert: Mapping[str, Any]) -> dict[str, float]:
    nan = total = 0
    full = True
    for name in CUTOUT_FIELDS.values():
        cut = alert.get(name)
        if not cut:
            full = False
            continue
        pix = read_cutout(cut)
        nan += int(np.isnan(pix).sum())
        total += pix.size
        full &= pix.shape == (STAMP, STAMP)
    return {"stamp_nan": nan / total if total else math.nan, "stamp_any_nan": float(nan > 0),
            "stamp_full": float(full)}


def packet_stats(packets: Iterable[tuple[Mapping[str, Any], int, str | None]]) -> PacketSummary:
    """Field and packet statistics of decoded packets.

    Parameters
    ----------
    packets
        ``(alert record, packet size in bytes, writer schema version or None)`` per packet.

    Returns
    -------
    PacketSummary
        Its ``fields`` table has, per ``group.field``: ``n`` (records that have the field),
        ``packets`` (packets with at least one such record), ``null``, ``nan``, ``sentinel``
        (-999 or -99999), ``nullstr`` (the string ``"null"``) as fractions of ``n``;
        ``always_null_packets`` (True when the field is null or absent in every record of
        every packet that has the group), ``distinct`` (distinct values, capped at 50),
        ``min``, ``median``, ``max`` of the numeric values (sentinels excluded) and the
        schema ``versions`` it was seen in.
    """
    counts: dict[str, dict[str, Any]] = {}
    rows = []
    versions: dict[str, int] = {}
    for alert, nbytes, writer_version in packets:
        version = _version(alert, writer_version)
        versions[version] = versions.get(version, 0) + 1
        prv = alert.get("prv_candidates") or []
        seen: set[str] = set()
        n_fp = 0
        for group, rec in _records(alert):
            n_fp += group == "fp_hist"
            for name, value in rec.items():
                key = f"{group}.{name}"
                c = counts.setdefault(key, {"n": 0, "packets": 0, "null": 0, "nan": 0,
                                            "sentinel": 0, "nullstr": 0, "values": [],
                                            "distinct": set(), "filled_packets": set(),
                                            "versions": set()})
                c["n"] += 1
                c["versions"].add(version)
                if key not in seen:
                    seen.add(key)
                    c["packets"] += 1
                kind = _kind(value)
                if kind in ("null", "nan", "sentinel", "nullstr"):
                    c[kind] += 1
                if kind not in ("null", "nan"):
                    c["filled_packets"].add(len(rows))
                if kind == "num":
                    c["values"].append(float(value))
                if kind in ("num", "str") and len(c["distinct"]) < 50:
                    c["distinct"].add(value)
        rows.append({"version": version, "nbytes": nbytes,
                     "n_det": sum(1 for p in prv if p.get("candid") is not None),
                     "n_ul": sum(1 for p in prv if p.get("candid") is None
                                 and "forcediffimflux" not in p),
                     "n_fp": n_fp, **_stamp_figures(alert)})
    table = []
    for key, c in sorted(counts.items()):
        n = c["n"]
        vals = np.asarray(c["values"], float)
        table.append({
            "field": key, "n": n, "packets": c["packets"],
            "null": c["null"] / n, "nan": c["nan"] / n, "sentinel": c["sentinel"] / n,
            "nullstr": c["nullstr"] / n,
            "always_null_packets": not c["filled_packets"],
            "distinct": len(c["distinct"]),
            "min": float(vals.min()) if vals.size else math.nan,
            "median": float(np.median(vals)) if vals.size else math.nan,
            "max": float(vals.max()) if vals.size else math.nan,
            "versions": ",".join(sorted(c["versions"])),
        })
    fields = pd.DataFrame(table).set_index("field") if table else pd.DataFrame()
    return PacketSummary(len(rows), versions, fields, pd.DataFrame(rows))


def summarize_packets(summary: PacketSummary) -> dict[str, float]:
    """Packet-level figures: counts, sizes, history lengths, cutout shapes and NaN pixels."""
    p = summary.packets
    if not len(p):
        return {"packets": 0}
    return {
        "packets": summary.n,
        "kbytes_median": float(p.nbytes.median() / 1000),
        "kbytes_min": float(p.nbytes.min() / 1000),
        "kbytes_max": float(p.nbytes.max() / 1000),
        "prv_detections_median": float(p.n_det.median()),
        "prv_upper_limits_median": float(p.n_ul.median()),
        "fp_hists_median": float(p.n_fp.median()),
        "fp_hists_zero_fraction": float((p.n_fp == 0).mean()),
        "stamps_with_nan_fraction": float(p.stamp_any_nan.mean()),
        "stamp_nan_pixel_fraction": float(p.stamp_nan.mean()),
        "stamps_63x63_fraction": float(p.stamp_full.mean()),
    }


def _v4(versions: str) -> bool:
    return any(v.startswith("4.") for v in versions.split(","))


def always_null_fields(ours: PacketSummary, real: PacketSummary) -> list[str]:
    """Fields that the real packets always fill and that ours leave null in every packet.

    Pass the real v4 packets as ``real`` for the realism bar of issue 20. Only groups present
    in both summaries count (a night with no upper limit says nothing about upper-limit
    fields), and a field null in any real record is not "always filled".
    """
    if not len(ours.fields) or not len(real.fields):
        return []
    return [key for key, r in real.fields.iterrows()
            if not key.startswith("alert.") and key in ours.fields.index
            and r.null + r.nan == 0 and ours.fields.loc[key, "always_null_packets"]]


def _none_use(null: float, sentinel: float, name: str = "-999") -> str:
    return f"null {_pct(null)}, {name} {_pct(sentinel)}"


def _pct(x: float) -> str:
    """A fraction for display; never rounds a non-zero one to 0 % or a partial one to 100 %."""
    if 0 < x < 0.001:
        return "<0.1%"
    if 0.999 < x < 1:
        return ">99.9%"
    return f"{x:.1%}"


def _fraction_class(x: float) -> str:
    return "never" if x == 0 else "always" if x == 1 else "some"


def compare(ours: PacketSummary, real: PacketSummary) -> pd.DataFrame:
    """Where zsds's packets differ from the real ones, one row per finding.

    Rules (fields of both summaries; real statistics from the versions that have the field):

    * ``null``: null (or NaN) never / sometimes / always in one and not in the other;
    * ``sentinel``: one writes null where the other writes -999 / -99999 (a field that one side
      never lacks says nothing about the convention);
    * ``"null"``: the same for the string ``"null"``;
    * ``constant``: one value in every packet of ours, several in the real ones (not for the
      :data:`OBSERVATION_FIELDS`);
    * ``range``: our median outside the real [min, max] (not for the
      :data:`IDENTITY_FIELDS`);
    * ``missing``: a field of real v4 packets that ours lack.

    Returns
    -------
    pandas.DataFrame
        Columns ``field``, ``check``, ``ours``, ``real``.
    """
    rows: list[dict[str, str]] = []
    if not len(ours.fields) or not len(real.fields):
        return pd.DataFrame(columns=["field", "check", "ours", "real"])
    for key, r in real.fields.iterrows():
        if key.startswith("alert."):
            continue
        if key not in ours.fields.index:
            group = key.split(".", 1)[0]
            present = ours.fields.index.str.startswith(group + ".").any()
            if _v4(r.versions) and present:
                rows.append({"field": key, "check": "missing", "ours": "absent",
                             "real": f"in {r.versions}"})
            continue
        o = ours.fields.loc[key]
        on, rn = o.null + o.nan, r.null + r.nan
        if _fraction_class(on) != _fraction_class(rn):
            rows.append({"field": key, "check": "null", "ours": _pct(on), "real": _pct(rn)})
        # A "none" convention differs only where one side has no value: null for one,
        # -999 (or "null") for the other.
        if ((on > 0 and o.sentinel == 0 and r.sentinel > 0)
                or (o.sentinel > 0 and r.sentinel == 0 and rn > 0)):
            rows.append({"field": key, "check": "sentinel", "ours": _none_use(on, o.sentinel),
                         "real": _none_use(rn, r.sentinel)})
        if ((on > 0 and o.nullstr == 0 and r.nullstr > 0)
                or (o.nullstr > 0 and r.nullstr == 0 and rn > 0)):
            rows.append({"field": key, "check": '"null"',
                         "ours": _none_use(on, o.nullstr, '"null"'),
                         "real": _none_use(rn, r.nullstr, '"null"')})
        if (o.distinct == 1 and r.distinct > 1 and o.packets > 1
                and key.split(".", 1)[1] not in OBSERVATION_FIELDS):
            rows.append({"field": key, "check": "constant", "ours": "1 value",
                         "real": f"{r.distinct} values"})
        if (np.isfinite(o["median"]) and np.isfinite(r["min"])
                and key.split(".", 1)[1] not in IDENTITY_FIELDS
                and not r["min"] <= o["median"] <= r["max"]):
            rows.append({"field": key, "check": "range", "ours": f"median {o['median']:.4g}",
                         "real": f"[{r['min']:.4g}, {r['max']:.4g}]"})
    return pd.DataFrame(rows, columns=["field", "check", "ours", "real"])


def read_packets(paths: Iterable[str | os.PathLike[str]]
                 ) -> list[tuple[dict[str, Any], int, str | None]]:
    """Decode every packet of files, folders and tarballs (:func:`~zsds.alerts.archive.
    iter_archive`) into the ``(record, size, writer version)`` triples of :func:`packet_stats`.

    Raises
    ------
    ValueError
        If a packet cannot be decoded (its label is in the message).
    """
    out = []
    for label, payload in iter_archive(paths):
        try:
            records, writer = decode_alert_packet(payload)
        except Exception as exc:  # fastavro raises several types for corrupt data
            raise ValueError(f"{label}: not a readable alert packet ({exc})") from exc
        version = writer.get("version")
        out.extend((rec, len(payload), None if version is None else str(version))
                   for rec in records)
    return out


def is_v4(packet: tuple[Mapping[str, Any], int, str | None]) -> bool:
    """True for a packet of schema 4.x (the current ZTF stream)."""
    return _version(packet[0], packet[2]).startswith("4.")


def report_lines(ours: PacketSummary, real: PacketSummary | None = None,
                 real_v4: PacketSummary | None = None) -> list[str]:
    """The text of ``zsds eval alerts``: packet figures side by side, the differing fields and
    the fields that real v4 packets always fill but ours leave null (``KNOWN_GAPS`` marked).
    """
    def fmt(v: float | None) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"

    sides = [("zsds", ours)] + [(n, s) for n, s in (("real", real), ("real v4", real_v4))
                                if s is not None]
    figures = [summarize_packets(s) for _, s in sides]
    lines = ["packets: " + "; ".join(
        f"{name} {s.n} ({', '.join(f'v{v}: {k}' for v, k in sorted(s.versions.items()))})"
        for name, s in sides)]
    lines.append(f"{'figure':28s}" + "".join(f"{name:>12s}" for name, _ in sides))
    for key in figures[0]:
        if key == "packets":
            continue
        lines.append(f"{key:28s}" + "".join(f"{fmt(f.get(key)):>12s}" for f in figures))
    if real is not None:
        diff = compare(ours, real)
        lines.append(f"fields that differ from the real packets: {len(diff)}")
        lines.extend(f"  {r.field:28s} {r.check:9s} zsds {r.ours:>14s}   real {r.real}"
                     for r in diff.itertuples())
    if real_v4 is not None:
        gaps = always_null_fields(ours, real_v4)
        lines.append(f"always filled in real v4 packets, always null in zsds: {len(gaps)}"
                     + (f" ({len([g for g in gaps if g not in KNOWN_GAPS])} unexplained)"
                        if gaps else ""))
        lines.extend(f"  {g}" + (f"  (known: {KNOWN_GAPS[g]})" if g in KNOWN_GAPS else "")
                     for g in gaps)
    return lines
