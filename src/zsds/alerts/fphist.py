"""The forced-photometry history of an alert (``fp_hists``, schema >= 4.01) from zsds's own
forced photometry.

IPAC fills ``fp_hists`` with forced PSF-fit photometry at the candidate's position on the
difference images of the 30 days before it (every field and readout channel covering the
position). zsds measures the same with :func:`zsds.diffim.forced.forced_photometry` (one
row per difference image, ZFPS ``lc.txt`` columns plus the nearest reference source's
position); :func:`fp_hist_records` maps those rows onto ``fp_hist`` records with ZTF's
conventions: -99999 where there is no flux (``procstatus`` not 0) or no reference-catalogue
source within 5", ``procstatus`` as a string.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from zsds.core.instrument import Filter, rcid_of

__all__ = ["FP_DAYS", "FP_NONE", "fp_hist_records", "fp_window"]

#: How far back ``fp_hists`` go (days before the candidate).
FP_DAYS = 30.0
#: ZTF's "none" value in ``fp_hist`` records.
FP_NONE = -99999.0
#: ``fp_hist`` field <- forced-photometry column, for the values copied as they are.
_COPY = {
    "field": "field", "pid": "pid", "rfid": "rfid", "sciinpseeing": "sciinpseeing",
    "scibckgnd": "scibckgnd", "scisigpix": "scisigpix", "magzpsci": "zpmaginpsci",
    "magzpsciunc": "zpmaginpsciunc", "magzpscirms": "zpmaginpscirms", "clrcoeff": "clrcoeff",
    "clrcounc": "clrcoeffunc", "exptime": "exptime", "adpctdif1": "adpctdif1",
    "adpctdif2": "adpctdif2", "diffmaglim": "diffmaglim", "programid": "programid",
    "jd": "jd",
}  # fmt: skip
#: ``fp_hist`` field <- column, for the values that are -99999 when missing.
_OR_NONE = {
    "forcediffimflux": "forcediffimflux", "forcediffimfluxunc": "forcediffimfluxunc",
    "distnr": "dnearestrefsrc", "ranr": "nearestrefra", "decnr": "nearestrefdec",
    "magnr": "nearestrefmag", "sigmagnr": "nearestrefmagunc", "chinr": "nearestrefchi",
    "sharpnr": "nearestrefsharp",
}  # fmt: skip


def fp_window(jd: float, days: float = FP_DAYS) -> tuple[float, float]:
    """``(jdstart, jdend)`` of the forced-photometry history of a candidate at ``jd``."""
    return jd - days, jd


def _value(v: Any) -> Any:
    if v is None or v is pd.NA:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    return v.item() if hasattr(v, "item") else v


def fp_hist_records(lc: pd.DataFrame, before_jd: float, *, exclude_pid: int | None = None
                    ) -> list[dict[str, Any]]:
    """``fp_hist`` records of forced-photometry rows (ZTF conventions).

    Parameters
    ----------
    lc
        :func:`zsds.diffim.forced.forced_photometry` rows (with ``extra=True`` for the
        nearest source's position; without, ``ranr``/``decnr`` are -99999).
    before_jd
        Only rows with ``jd`` strictly before it (the candidate's own epoch is not history).
    exclude_pid
        Leave out this image (the candidate's own difference image).

    Returns
    -------
    list of dict
        In ``jd`` order; ``rcid`` from ``ccdid``/``qid``, ``fid`` from ``filter``,
        ``procstatus`` a string, -99999 for a missing flux or nearest reference source.
    """
    out = []
    for row in lc.sort_values(["jd", "pid"], kind="stable").to_dict("records"):
        jd = _value(row.get("jd"))
        if jd is None or jd >= before_jd:
            continue
        if exclude_pid is not None and _value(row.get("pid")) == exclude_pid:
            continue
        rec: dict[str, Any] = {k: _value(row.get(c)) for k, c in _COPY.items()}
        ccd, qid = _value(row.get("ccdid")), _value(row.get("qid"))
        rec["rcid"] = None if ccd is None or qid is None else rcid_of(int(ccd), int(qid))
        rec["fid"] = Filter.parse(str(row.get("filter")).removeprefix("ZTF_")).fid
        status = _value(row.get("procstatus"))
        rec["procstatus"] = None if status is None else str(int(status))
        for k, c in _OR_NONE.items():
            v = _value(row.get(c))
            rec[k] = FP_NONE if v is None else v
        out.append(rec)
    return out
