"""Period recovery on real light curves with published periods (``zsds eval periods``).

A *period set* is a folder with ``periods.csv`` (``id``, ``period_d``, optional ``type``) and
``light-curves/<id>.csv`` (or ``.csv.gz``) with the columns ``time, mag, magerr, band`` (the
layout of the SDSS Stripe 82 RR Lyrae set, Sesar et al. 2010).  The stars are split into two
halves by a hash of their id (:func:`half_of`), so the split is fixed, needs no list and is the
same for any subset: half 0 is the *development* half (settings were chosen on it only), half 1
the *held-out* half (reported, never tuned on).

A period counts as recovered when ``|found / published - 1| < 0.01``.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from zsds.lightcurves.metrics import period_matches
from zsds.lightcurves.periods import PeriodSearchConfig, multiband_period, read_lightcurve_csv

__all__ = ["HALF_NAMES", "half_of", "load_period_set", "recovery_summary", "recovery_table"]

#: Names of the two halves of :func:`half_of`.
HALF_NAMES = ("development", "held-out")


def half_of(ident: object) -> int:
    """0 (development) or 1 (held-out): the parity of the CRC-32 of the id's text."""
    return zlib.crc32(str(ident).encode()) % 2


def load_period_set(folder: str | Path,
                    half: int | None = None) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Read a period set (see the module notes).

    Parameters
    ----------
    folder : str or Path
        The folder holding ``periods.csv`` and ``light-curves/``.
    half : int, optional
        Only the stars of this half (0 development, 1 held-out).

    Returns
    -------
    lightcurves : dict
        id (text) -> light curve (:func:`~zsds.lightcurves.periods.read_lightcurve_csv`).
    periods : pandas.DataFrame
        Indexed by id (text): ``period_d``, ``type`` (if given) and ``half``.
    """
    folder = Path(folder)
    per = pd.read_csv(folder / "periods.csv", dtype={"id": str}).set_index("id")
    per["half"] = [half_of(i) for i in per.index]
    if half is not None:
        per = per[per["half"] == half]
    lcs = {}
    for ident in per.index:
        path = folder / "light-curves" / f"{ident}.csv"
        if not path.exists():
            path = path.with_name(path.name + ".gz")
        lcs[ident] = read_lightcurve_csv(path)
    return lcs, per


def recovery_table(lightcurves: Mapping[str, pd.DataFrame], periods: pd.DataFrame,
                   band_sets: Mapping[str, Sequence[str]],
                   config: PeriodSearchConfig | None = None) -> pd.DataFrame:
    """Found period of every star for every band set.

    Parameters
    ----------
    lightcurves : mapping
        id -> light curve (columns ``time, mag, magerr, band``).
    periods : pandas.DataFrame
        Indexed by id, column ``period_d`` (and ``half``, ``type`` if present).
    band_sets : mapping
        Name -> bands searched together (e.g. ``{"ugriz": "ugriz", "g": "g"}``).
    config : PeriodSearchConfig, optional

    Returns
    -------
    pandas.DataFrame
        Indexed by id: the columns of ``periods``, then per band set ``<name>`` (found
        period, d) and ``<name>_ok`` (recovered within 1%).
    """
    out = periods.copy()
    for name, bands in band_sets.items():
        found = []
        for ident in periods.index:
            d = lightcurves[ident]
            d = d[d["band"].isin(list(bands))]
            r = multiband_period(d["time"].to_numpy(), d["mag"].to_numpy(),
                                 d["magerr"].to_numpy(), d["band"].to_numpy(), config)
            found.append(r.period)
        out[name] = found
        out[f"{name}_ok"] = period_matches(np.asarray(found), out["period_d"].to_numpy())
    return out


def recovery_summary(table: pd.DataFrame, band_sets: Sequence[str]) -> pd.DataFrame:
    """Recovered fraction per band set (rows) and half (columns, plus ``all``).

    The ``n_<half>`` columns give the number of stars of each half.
    """
    rows = {}
    halves = table["half"] if "half" in table else pd.Series(0, index=table.index)
    for name in band_sets:
        ok = table[f"{name}_ok"].astype(bool)
        row = {HALF_NAMES[h]: float(ok[halves == h].mean()) if (halves == h).any() else np.nan
               for h in (0, 1)}
        row["all"] = float(ok.mean())
        rows[name] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    for h in (0, 1):
        out[f"n_{HALF_NAMES[h]}"] = int((halves == h).sum())
    return out
