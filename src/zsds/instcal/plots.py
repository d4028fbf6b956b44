"""QA figure of instrumental calibration against truth (matplotlib, PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

#: (column, title, bar value or None)
PANELS = (
    ("astrom_rms_ra", 'astrometric rms RA (")', 0.03),
    ("astrom_rms_dec", 'astrometric rms Dec (")', 0.03),
    ("psf_median_offset", "calibrated star mag - true (mag)", 0.01),
    ("psf_pull_scatter", "PSF-mag scatter / error", 1.5),
    ("completeness", "completeness, S/N >= 10", 0.95),
    ("maglim", "5-sigma limiting magnitude", None),
)


def plot_quality(quality: pd.DataFrame, path: Path, title: str) -> Path:
    """One panel per quality figure, one point per quadrant, with the issue's bars dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 7), constrained_layout=True)
    idx = np.arange(len(quality))
    labels = [str(p)[-6:] for p in quality["pid"]]
    for ax, (col, name, bar) in zip(axes.ravel(), PANELS, strict=True):
        vals = quality[col].to_numpy(float)
        ax.plot(idx, vals, "o", color="tab:blue")
        if bar is not None:
            ax.axhline(bar, ls="--", color="tab:red", lw=1)
            if col == "psf_median_offset":
                ax.axhline(-bar, ls="--", color="tab:red", lw=1)
        ax.set_title(name)
        ax.set_xticks(idx, labels, rotation=90, fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
