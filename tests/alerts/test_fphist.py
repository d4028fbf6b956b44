"""Forced-photometry rows -> ``fp_hist`` records with ZTF's conventions."""

from __future__ import annotations

import math

import pandas as pd

from zsds.alerts.fphist import FP_NONE, fp_hist_records, fp_window
from zsds.alerts.packet import build_alert, read_alert_file, serialize_alert
from zsds.diffim.forced import EXTRA_COLUMNS, LC_COLUMNS, empty_lc

JD = 2461000.5


def lc_rows() -> pd.DataFrame:
    base = {c: 1.0 for c in LC_COLUMNS + EXTRA_COLUMNS}
    base.update(field=645, ccdid=6, qid=1, filter="ZTF_r", programid=1, rfid=645120206,
                procstatus=0, forcediffimflux=123.5, forcediffimfluxunc=10.0,
                dnearestrefsrc=0.4, nearestrefra=10.0, nearestrefdec=-5.0)
    rows = [
        dict(base, pid=3, jd=JD - 1.0),
        # No flux (too few good pixels) and no reference source near.
        dict(base, pid=2, jd=JD - 2.0, procstatus=56, forcediffimflux=math.nan,
             forcediffimfluxunc=math.nan, dnearestrefsrc=math.nan, nearestrefra=math.nan,
             nearestrefdec=math.nan, nearestrefmag=math.nan, filter="ZTF_g"),
        dict(base, pid=9, jd=JD),  # the candidate's own epoch: not history
        dict(base, pid=4, jd=JD - 0.5),  # the candidate's own image (exclude_pid)
    ]
    return pd.DataFrame(rows)


def test_records_follow_ztf():
    recs = fp_hist_records(lc_rows(), JD, exclude_pid=4)
    assert [r["pid"] for r in recs] == [2, 3]  # jd order, own epoch and image left out
    nothing, measured = recs
    assert nothing["procstatus"] == "56" and measured["procstatus"] == "0"
    for name in ("forcediffimflux", "forcediffimfluxunc", "distnr", "ranr", "decnr", "magnr"):
        assert nothing[name] == FP_NONE, name
    assert measured["forcediffimflux"] == 123.5 and measured["ranr"] == 10.0
    assert (measured["rcid"], measured["fid"], nothing["fid"]) == (20, 2, 1)
    assert fp_window(JD) == (JD - 30.0, JD)


def test_records_fit_the_schema(sample_v401):
    fph = fp_hist_records(lc_rows(), JD)
    alert = build_alert("ZTF26aaaaaaa", sample_v401["candidate"], None, None, fp_hists=fph)
    back = read_alert_file(serialize_alert(alert))[0]["fp_hists"]
    assert [r["pid"] for r in back] == [2, 3, 4]
    assert back[0]["forcediffimflux"] == FP_NONE and back[0]["procstatus"] == "56"


def test_no_image_no_history():
    assert fp_hist_records(empty_lc(LC_COLUMNS + EXTRA_COLUMNS), JD) == []
