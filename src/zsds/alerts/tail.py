"""One human-readable line per alert, for files, archives and Kafka topics.

Works for every schema version seen in real packets (1.7 .. 4.01): a field that a version lacks
(``drb`` before 3.3, ``fp_hists`` before 4.01, ``schemavsn`` before 2.0) prints as ``-``. For
1.x packets the version is taken from the writer schema and shown in parentheses. In v3.5
test packets the forced-photometry records sit inside ``prv_candidates``; they are counted with
``fp_hists``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from astropy.time import Time

from zsds.alerts.archive import iter_archive
from zsds.alerts.kafka import consume_alerts
from zsds.alerts.packet import CUTOUT_FIELDS, decode_alert_packet

#: Filter id -> band letter.
BANDS = {1: "g", 2: "r", 3: "i"}
#: Columns of :func:`summarize`, in display order.
COLUMNS = (
    "schemavsn", "objectId", "candid", "utc", "band", "mag", "isdiffpos", "rb", "drb",
    "ra", "dec", "prv", "fp", "ssnamenr", "cutouts",
)  # fmt: skip
MISSING = "-"


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) or number == -999.0 else number


def jd_to_utc(jd: float | None) -> str | None:
    """ISO UTC time (to the second) of a Julian date, or None."""
    if _num(jd) is None:
        return None
    return Time(float(jd), format="jd", scale="utc").isot[:19]


def summarize(alert: Mapping[str, Any], *, writer_version: str | None = None) -> dict[str, Any]:
    """Key facts of one alert record; None where the packet does not have them.

    Parameters
    ----------
    alert
        A decoded ``ztf.alert`` record of any version.
    writer_version
        ``version`` of the writer schema, used when the record has no ``schemavsn``.

    Returns
    -------
    dict
        Keys of :data:`COLUMNS` plus ``magpsf``, ``sigmapsf``, ``n_det``, ``n_ul``, ``n_fp``.
    """
    cand = alert.get("candidate") or {}
    prv = alert.get("prv_candidates") or []
    fp_shaped = [p for p in prv if "forcediffimflux" in p]
    n_fp = len(alert.get("fp_hists") or []) + len(fp_shaped)
    n_det = sum(1 for p in prv if "forcediffimflux" not in p and p.get("candid") is not None)
    n_ul = len(prv) - len(fp_shaped) - n_det
    version = alert.get("schemavsn")
    if version is None and writer_version is not None:
        version = f"({writer_version})"
    ssname = cand.get("ssnamenr")
    return {
        "schemavsn": version,
        "objectId": alert.get("objectId"),
        "candid": alert.get("candid", cand.get("candid")),
        "jd": cand.get("jd"),
        "utc": jd_to_utc(cand.get("jd")),
        "band": BANDS.get(cand.get("fid"), None if cand.get("fid") is None else str(cand["fid"])),
        "magpsf": _num(cand.get("magpsf")),
        "sigmapsf": _num(cand.get("sigmapsf")),
        "isdiffpos": cand.get("isdiffpos"),
        "rb": _num(cand.get("rb")),
        "drb": _num(cand.get("drb")),
        "ra": _num(cand.get("ra")),
        "dec": _num(cand.get("dec")),
        "n_det": n_det,
        "n_ul": n_ul,
        "n_fp": n_fp if ("fp_hists" in alert or fp_shaped) else None,
        # "null" (a string) is how real packets say "no known solar-system object".
        "ssnamenr": None if ssname in (None, "", "null") else ssname,
        "cutouts": "".join(
            kind[0].upper() if alert.get(field) else MISSING
            for kind, field in CUTOUT_FIELDS.items()
        ),
    }


def _fmt(value: Any, spec: str = "") -> str:
    return MISSING if value is None else format(value, spec)


def summary_cells(summary: Mapping[str, Any]) -> dict[str, str]:
    """The :data:`COLUMNS` of a :func:`summarize` result as display strings."""
    mag = summary["magpsf"]
    sig = summary["sigmapsf"]
    mag_text = MISSING if mag is None else f"{mag:.2f}±{_fmt(sig, '.2f')}"
    prv = f"{summary['n_det']}d/{summary['n_ul']}u"
    return {
        "schemavsn": _fmt(summary["schemavsn"]),
        "objectId": _fmt(summary["objectId"]),
        "candid": _fmt(summary["candid"]),
        "utc": _fmt(summary["utc"]),
        "band": _fmt(summary["band"]),
        "mag": mag_text,
        "isdiffpos": _fmt(summary["isdiffpos"]),
        "rb": _fmt(summary["rb"], ".2f"),
        "drb": _fmt(summary["drb"], ".2f"),
        "ra": _fmt(summary["ra"], "9.5f"),
        "dec": _fmt(summary["dec"], "+9.5f"),
        "prv": prv,
        "fp": _fmt(summary["n_fp"]),
        "ssnamenr": _fmt(summary["ssnamenr"]),
        "cutouts": summary["cutouts"],
    }


def format_line(alert: Mapping[str, Any], *, writer_version: str | None = None) -> str:
    """One line describing an alert (columns as in :data:`COLUMNS`; ``-`` where absent).

    ``alert`` and ``writer_version`` are as for :func:`summarize`.
    """
    c = summary_cells(summarize(alert, writer_version=writer_version))
    return (
        f"{c['schemavsn']:<6} {c['objectId']:<12} {c['candid']:>19} {c['utc']:<19} {c['band']} "
        f"{c['mag']:<11} {c['isdiffpos']} rb={c['rb']:<4} drb={c['drb']:<4} "
        f"ra={c['ra']:>9} dec={c['dec']:>9} prv={c['prv']:<7} fp={c['fp']:<3} "
        f"ss={c['ssnamenr']} cut={c['cutouts']}"
    )


class _Sink:
    """Send summaries either as plain lines, or collect them for one rich table at the end."""

    def __init__(self, out: Callable[[str], Any], table: bool) -> None:
        self.out = out
        self.table = table
        self.rows: list[dict[str, str]] = []
        self.count = 0

    def add(self, alert: Mapping[str, Any], writer_version: str | None) -> None:
        self.count += 1
        if self.table:
            self.rows.append(summary_cells(summarize(alert, writer_version=writer_version)))
        else:
            self.out(format_line(alert, writer_version=writer_version))

    def close(self) -> None:
        if not self.table:
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(*COLUMNS, title=f"{self.count} alert(s)")
        for row in self.rows:
            table.add_row(*(row[c] for c in COLUMNS))
        console = Console(width=240)
        with console.capture() as capture:
            console.print(table)
        self.out("\n".join(line.rstrip() for line in capture.get().rstrip("\n").splitlines()))


def _version(writer_schema: Mapping[str, Any]) -> str | None:
    version = writer_schema.get("version")
    return None if version is None else str(version)


def tail_files(
    paths: Iterable[str | os.PathLike[str]],
    out: Callable[[str], Any] = print,
    *,
    table: bool = False,
    errors: Callable[[str], Any] | None = None,
) -> int:
    """Print one line per alert found in files, folders and tarballs.

    Parameters
    ----------
    paths
        See :func:`zsds.alerts.archive.iter_archive`.
    out
        Receives each line (or the rendered table).
    table
        Collect the alerts and print one rich table at the end.
    errors
        Receives ``"<label>: <error>"`` for a packet that cannot be decoded; default: raise.

    Returns
    -------
    int
        Number of alerts shown.
    """
    sink = _Sink(out, table)
    for label, payload in iter_archive(paths):
        _show(sink, label, payload, errors)
    sink.close()
    return sink.count


def _show(sink: _Sink, label: str, payload: bytes, errors: Callable[[str], Any] | None) -> None:
    """Decode one packet into the sink; a corrupt one raises, or goes to ``errors``."""
    try:
        records, writer = decode_alert_packet(payload)
    except Exception as exc:  # fastavro raises several types for corrupt data
        if errors is None:
            raise ValueError(f"{label}: not a readable alert packet ({exc})") from exc
        errors(f"{label}: {exc}")
        return
    for record in records:
        sink.add(record, _version(writer))


def tail_kafka(
    bootstrap: str,
    topics: str | Sequence[str],
    group_id: str,
    out: Callable[[str], Any] = print,
    *,
    table: bool = False,
    max_messages: int | None = None,
    idle_timeout: float = 5.0,
    from_beginning: bool = True,
    commit: bool = True,
    errors: Callable[[str], Any] | None = None,
) -> int:
    """Print one line per alert consumed from Kafka (see :func:`zsds.alerts.kafka.consume_alerts`).

    Returns
    -------
    int
        Number of alerts shown.
    """
    sink = _Sink(out, table)
    for msg in consume_alerts(
        bootstrap,
        topics,
        group_id,
        max_messages=max_messages,
        idle_timeout=idle_timeout,
        from_beginning=from_beginning,
        commit=commit,
    ):
        _show(sink, f"{msg.topic}[{msg.partition}]@{msg.offset}", msg.value, errors)
    sink.close()
    return sink.count
