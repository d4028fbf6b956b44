"""Tabular responses in the formats IRSA serves: IPAC table, CSV, TSV, VOTable, HTML, JSON.

Everything is written by astropy (``ascii.ipac``, ``ascii.csv``, ``votable``), because the
IPAC format is column-aligned and a value one character off is silently corrupted on reading
(``ARCHIVE_API.md`` section 6).
"""

from __future__ import annotations

import io
import json
import math
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
from astropy.io.votable.tree import Info
from astropy.io.votable.tree import VOTableFile as _VOTableFile
from astropy.table import MaskedColumn, Table
from fastapi import Response

#: Accepted spellings of each output format (case-insensitive).
_ALIASES = {
    "ipac": "ipac", "ipac_table": "ipac", "ipac_tbl": "ipac", "tbl": "ipac",
    "csv": "csv", "text/csv": "csv",
    "tsv": "tsv", "text/tab-separated-values": "tsv",
    "votable": "votable", "vot": "votable", "xml": "votable",
    "application/x-votable+xml": "votable",
    "votable/td": "votable", "text/xml": "votable",
    "html": "html", "text/html": "html",
    "json": "json", "application/json": "json",
}

MEDIA = {
    "ipac": "text/plain; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "tsv": "text/tab-separated-values; charset=utf-8",
    "votable": "application/x-votable+xml",
    "html": "text/html; charset=utf-8",
    "json": "application/json",
}


class FormatError(ValueError):
    """An output format the service does not know."""


def parse_format(value: str | None, default: str = "ipac") -> str:
    """Canonical output format (``ipac``, ``csv``, ``tsv``, ``votable``, ``html``, ``json``).

    Raises
    ------
    FormatError
        For an unknown format, with the accepted values in the message.
    """
    if value is None or str(value).strip() == "":
        return default
    key = str(value).strip().lower()
    if key not in _ALIASES:
        raise FormatError(f"unknown output format {value!r}: use one of "
                          "ipac_table, csv, tsv, votable, html, json")
    return _ALIASES[key]


def _masked(table: Table) -> Table:
    """Copy with NaN floats and None objects masked, so writers emit ``null``/empty cells."""
    out = Table(table, copy=False, masked=False)
    for name in out.colnames:
        col = out[name]
        data = np.asarray(col)
        if data.dtype.kind == "f":
            bad = ~np.isfinite(data)
            if bad.any():
                out[name] = MaskedColumn(data, mask=bad | np.ma.getmaskarray(col),
                                         unit=col.unit, description=col.description)
        elif data.dtype.kind == "O":
            bad = np.array([v is None for v in data], dtype=bool)
            vals = np.array(["" if v is None else str(v) for v in data])
            out[name] = MaskedColumn(vals, mask=bad, unit=col.unit, description=col.description)
    return out


def ipac_text(table: Table, keywords: dict[str, Any] | None = None) -> str:
    """The table as an IPAC table (4 header lines: names, types, units, nulls)."""
    t = _masked(table)
    t.meta = {"keywords": {k: {"value": v} for k, v in (keywords or {}).items()}}
    buf = io.StringIO()
    t.write(buf, format="ascii.ipac")
    return buf.getvalue()


def csv_text(table: Table, delimiter: str = ",") -> str:
    """Plain header line plus rows; missing values are empty cells."""
    buf = io.StringIO()
    _masked(table).write(buf, format="ascii.csv" if delimiter == "," else "ascii.tab",
                         fill_values=[("nan", ""), ("", "")], overwrite=True)
    return buf.getvalue()


def votable_bytes(table: Table, *, query_status: str = "OK", status_text: str | None = None,
                  infos: dict[str, str] | None = None, ucds: dict[str, str] | None = None
                  ) -> bytes:
    """The table as a VOTable inside ``RESOURCE type="results"`` with ``QUERY_STATUS``.

    Parameters
    ----------
    ucds : dict, optional
        UCDs of some columns (e.g. ``POS_EQ_RA_MAIN`` for Simple Cone Search clients).
    """
    vot = _VOTableFile.from_table(_masked(table))
    resource = vot.resources[0]
    resource.type = "results"
    status = Info(name="QUERY_STATUS", value=query_status)
    if status_text:
        status.content = status_text
    resource.infos.append(status)
    for k, v in (infos or {}).items():
        # An explicit XML ID: names such as SIA's "INPUT:POS" are not valid IDs.
        resource.infos.append(Info(name=k, ID=k.replace(":", "_"), value=str(v)))
    for fld in resource.tables[0].fields:
        if ucds and fld.name in ucds:
            fld.ucd = ucds[fld.name]
    buf = io.BytesIO()
    vot.to_xml(buf)
    return buf.getvalue()


def votable_error(message: str) -> bytes:
    """A VOTable error document as IRSA writes it: a top-level ``INFO name="Error"`` (what
    pyvo's SCS parser looks for) and a ``QUERY_STATUS`` of ``ERROR`` (TAP/SIA2)."""
    text = escape(message, {'"': "&quot;"})
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">\n'
        f'  <INFO name="Error" ID="Error" value="{text}"/>\n'
        f'  <RESOURCE type="results"><INFO name="QUERY_STATUS" value="ERROR">{text}</INFO>'
        "</RESOURCE>\n</VOTABLE>\n"
    ).encode()


def html_table(table: Table, title: str = "") -> str:
    """A minimal HTML page with the table (IRSA's ``ct=html``)."""
    head = "".join(f"<th>{escape(n)}</th>" for n in table.colnames)
    rows = []
    for row in _masked(table):
        cells = "".join(f"<td>{'' if np.ma.is_masked(v) else escape(str(v))}</td>" for v in row)
        rows.append(f"<tr>{cells}</tr>")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"</head><body><table border='1'><tr>{head}</tr>{''.join(rows)}</table>"
            "</body></html>")


def _json_value(v: Any) -> Any:
    if np.ma.is_masked(v) or v is None:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, bytes):
        return v.decode()
    return v


def json_rows(table: Table) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (NaN and masked become null)."""
    names = table.colnames
    return [{n: _json_value(row[n]) for n in names} for row in table]


def table_response(table: Table, fmt: str, *, keywords: dict[str, Any] | None = None,
                   ucds: dict[str, str] | None = None, title: str = "",
                   infos: dict[str, str] | None = None) -> Response:
    """An HTTP response holding ``table`` in the canonical format ``fmt``."""
    if fmt == "ipac":
        body: str | bytes = ipac_text(table, keywords)
    elif fmt == "csv":
        body = csv_text(table)
    elif fmt == "tsv":
        body = csv_text(table, delimiter="\t")
    elif fmt == "votable":
        body = votable_bytes(table, ucds=ucds, infos=infos)
    elif fmt == "html":
        body = html_table(table, title)
    elif fmt == "json":
        body = json.dumps({"columns": table.colnames, "rows": json_rows(table)})
    else:
        raise FormatError(f"unknown output format {fmt!r}")
    return Response(content=body, media_type=MEDIA[fmt])


def ibe_error(message: str, status: int = 400) -> Response:
    """An IBE-style error: a short XML document with an HTTP 4xx status."""
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<error><message>{escape(message)}</message></error>\n")
    return Response(content=body, status_code=status, media_type="text/xml")
