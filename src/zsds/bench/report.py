"""Print, plot and write the figures of ``zsds bench realtime``.

The input is :func:`zsds.bench.realtime.summarize`'s dict; :data:`BARS` are issue 22's bars.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

__all__ = ["BARS", "bar_checks", "plot_summary", "print_summary", "write_json"]

#: Issue 22's bars: figure -> (limit, what it says). They hold for full-size quadrants.
BARS = {
    "median_s_per_quadrant_core": (5.0, "median over the survey mix <= 5 s per quadrant per core"),
    "plane_s_per_quadrant_core": (12.0, "Galactic plane <= 12 s per quadrant per core"),
    "peak_gb": (1.5, "<= 1.5 GB peak per quadrant job"),
    "cores_for_ztf": (8, "<= 8 cores for ZTF's 85 quadrants per minute"),
    "zogy_over_fft_floor": (3.0, "ZOGY stage within 3x of its FFT floor"),
}
#: Colours of the step groups in the chart.
GROUPS = {
    "read + split": (("read_raw", "split"), "#8c8c8c"),
    "flat, masks, QA, cosmics": (("flatfield_qa", "cosmics"), "#9ecae1"),
    "extraction": (("extract",), "#3182bd"),
    "PSF + PSF photometry": (("psf", "psfphot"), "#08519c"),
    "astrometry + photcal": (("astrometry", "photcal"), "#6baed6"),
    "calibration I/O + DB": (("calib_write", "calib_io"), "#c6dbef"),
    "subtraction (read, register, ZOGY)": (("sub_read", "register", "match", "zogy", "finish"),
                                           "#e6550d"),
    "streaks": (("streaks",), "#fd8d3c"),
    "candidates + rb + known": (("candidates", "rb", "known"), "#31a354"),
    "write + database + packets": (("sub_write", "database", "sub_other", "packets", "other"),
                                   "#756bb1"),
}


def _f(v: float, fmt: str = "{:.2f}") -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)


def bar_checks(summary: dict) -> list[tuple[str, float, float, bool | None]]:
    """``(what, value, limit, met)`` per bar; ``met`` is None where the figure is missing or
    the run was not on full-size quadrants (the bars are for those)."""
    out = []
    for key, (limit, what) in BARS.items():
        v = summary.get(key)
        ok = (None if v is None or not math.isfinite(float(v)) or float(v) < 0
              else float(v) <= limit)
        if key != "zogy_over_fft_floor" and not summary.get("full_size"):
            ok = None
        out.append((what, v, limit, ok))
    return out


def print_summary(summary: dict, console: Console | None = None) -> None:
    """The run as tables: jobs, per-step seconds, peers (as ratios), the real quadrant and the
    headline figures against the issue's bars."""
    console = console or Console(width=160)
    jobs = summary["jobs"]
    ny, nx = summary["quadrant_shape"]
    t = Table(title=f"real-time chain, {nx}x{ny} quadrants, {summary['workers']} worker "
                    "process(es), one thread each (processor seconds)")
    t.add_column("step")
    for j in jobs:
        t.add_column(f"{j['label']} ({j['field']})", justify="right")
    t.add_column("median", justify="right")
    for step, med in summary["step_median_s"].items():
        t.add_row(step, *[_f(j["steps"].get(step)) for j in jobs], _f(med))
    t.add_row("[bold]processor total = s/quadrant/core",
              *[f"[bold]{_f(j['cpu_s'])}" for j in jobs],
              f"[bold]{_f(summary['median_s_per_quadrant_core'])}")
    t.add_row("wall total (waits for a core included)", *[_f(j["total_s"]) for j in jobs],
              _f(summary["median_wall_s_per_quadrant"]))
    t.add_row("warm-up (once per process)", *[_f(j["warmup_s"]) for j in jobs], "")
    t.add_row("peak memory (GB)", *[_f(j["peak_rss_gb"]) for j in jobs],
              _f(summary["peak_gb"]))
    for key in ("sexcat", "candidates", "passed", "packets"):
        t.add_row(key, *[str(j["counts"].get(key, "")) for j in jobs], "")
    console.print(t)
    for j in jobs:
        if not j["ok"]:
            console.print(f"[red]job {j['label']} failed: {j['message']}")
    details = summary.get("peer_details") or {}
    for title, d in (("peers on the same quadrant", details),
                     ("the real ZTF quadrant", details.get("real") or {})):
        if d.get("error"):
            console.print(f"[red]{title}: failed: {d['error']}")
        if not d.get("seconds"):
            continue
        from zsds.bench.peers import PEER_STEP

        pt = Table(title=f"{title} {d.get('quadrant', {}).get('shape', '')}: processor "
                         "seconds, one thread, same process")
        for col in ("peer", "peer s", "zsds step", "zsds s", "zsds / peer"):
            pt.add_column(col, justify="left" if col in ("peer", "zsds step") else "right")
        for p, sec in d["seconds"].items():
            step = PEER_STEP.get(p, "")
            pt.add_row(p, _f(sec), step, _f(d["zsds"].get(step)), _f(d["ratios"].get(p)))
        for p in d.get("skipped", {}):
            pt.add_row(p, "skipped", PEER_STEP.get(p, ""), "", "")
        console.print(pt)
        for p, note in {**d.get("notes", {}), **d.get("skipped", {})}.items():
            console.print(f"  {p}: {note}")
    real = summary.get("real_quadrant")
    if real:
        console.print("real ZTF quadrant "
                      f"{real['shape'][1]}x{real['shape'][0]} (measure_sources): "
                      + ", ".join(f"{k} {v:.2f} s" for k, v in real["steps"].items())
                      + f"; total {real['total_s']:.2f} s wall, {real['cpu_s']:.2f} s processor, "
                        f"{real['counts'].get('sexcat', 0)} sources")
    console.print(
        f"[bold]median {_f(summary['median_s_per_quadrant_core'])} processor s per quadrant "
        f"per core (wall {_f(summary['median_wall_s_per_quadrant'])} s at load average "
        f"{_f((summary.get('load_average') or [float('nan')])[0])}) "
        f"(Galactic plane {_f(summary['plane_s_per_quadrant_core'])} s), peak "
        f"{_f(summary['peak_gb'])} GB per job, {summary['cores_for_ztf']} cores for ZTF's "
        f"{summary['ztf_quadrants_per_min']:.0f} quadrants/min[/] (IPAC: "
        f"{summary['ipac']['s_per_quadrant_core']:.0f} s, {summary['ipac']['cores']} cores); "
        f"batch {summary['quadrants_per_min']:.2f} quadrants/min on {summary['workers']} "
        f"core(s); ZOGY / FFT floor {_f(summary['zogy_over_fft_floor'])}")
    if not summary["full_size"]:
        console.print(f"[yellow]quadrants of {nx}x{ny} = {summary['pixels_over_full_size']:.3f} "
                      "of a full one: the bars below are for full-size quadrants")
    for what, v, _limit, ok in bar_checks(summary):
        mark = {True: "[green]meets", False: "[red]misses", None: "[yellow]n/a"}[ok]
        console.print(f"  {mark}[/] {what}: {_f(v) if not isinstance(v, int) else v}")


def _clean(obj):
    """JSON-safe copy: NaN and infinities become null, tuples lists."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "item"):  # numpy scalars
        return _clean(obj.item())
    return obj


def write_json(summary: dict, path: Path) -> Path:
    """Write the summary as JSON (NaN as null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean(summary), indent=1) + "\n")
    return path


def plot_summary(summary: dict, path: Path) -> Path:
    """PNG: per job, the chain's seconds stacked by step group; beside it, each peer against
    the zsds step it is compared with (same quadrant, same process)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    jobs = [j for j in summary["jobs"] if j["ok"]]
    real = summary.get("real_quadrant")
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(14, 6.5), width_ratios=(1.3, 1))
    rows = [(f"{j['label']}\n{j['field']}", j["steps"]) for j in jobs]
    if real:  # its steps are measure_sources' (named as the chain's), read = read_raw
        rsteps = {("read_raw" if k == "read" else k): v for k, v in real["steps"].items()}
        rows.append((f"real ZTF\n{real['shape'][1]}x{real['shape'][0]}", rsteps))
    labels = [r[0] for r in rows]
    left = [0.0] * len(rows)
    for name, (steps, colour) in GROUPS.items():
        w = [sum(r[1].get(k, 0.0) or 0.0 for k in steps) for r in rows]
        ax.barh(labels, w, left=left, color=colour, label=name)
        left = [a + b for a, b in zip(left, w, strict=True)]
    ny, nx = summary["quadrant_shape"]
    if summary.get("full_size"):
        ax.axvline(BARS["median_s_per_quadrant_core"][0], color="k", ls="--", lw=1)
        ax.axvline(BARS["plane_s_per_quadrant_core"][0], color="k", ls=":", lw=1)
    ax.set_xlabel("processor seconds per quadrant (one thread per job)")
    ax.set_title(f"real-time chain, {nx}x{ny}, {summary['workers']} worker(s): median "
                 f"{_f(summary['median_s_per_quadrant_core'])} processor s/quadrant/core, "
                 f"{summary['cores_for_ztf']} cores for ZTF", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3)
    ax.invert_yaxis()
    d = summary.get("peer_details") or {}
    rows = []
    for src, prefix in ((d, ""), (d.get("real") or {}, "real: ")):
        from zsds.bench.peers import PEER_STEP

        for p, s in (src.get("seconds") or {}).items():
            z = src["zsds"].get(PEER_STEP.get(p, ""))
            rows.append((f"{prefix}{p}", s, z))
    if rows:
        ys = range(len(rows))
        bx.barh([y - 0.2 for y in ys], [r[2] or 0 for r in rows], height=0.4, color="#3182bd",
                label="zsds step")
        bx.barh([y + 0.2 for y in ys], [r[1] for r in rows], height=0.4, color="#fd8d3c",
                label="peer")
        bx.set_yticks(list(ys), [r[0] for r in rows], fontsize=8)
        bx.set_xscale("log")
        bx.invert_yaxis()
        bx.legend(fontsize=8)
        bx.set_xlabel("processor seconds (one thread)")
        bx.set_title("peers on the same images")
    else:
        bx.axis("off")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
