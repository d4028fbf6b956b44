"""Catalogue context of candidates from PS1 DR2 / Gaia DR3 rows with their published names."""

from __future__ import annotations

import numpy as np
import pandas as pd

from zsds.diffim.context import gaia_context, ps1_context
from zsds.sky.model import true_galaxies, true_stars
from zsds.sky.refcat import make_gaia_like, make_ps1_like

SEED, PIX = 5, 20000


def test_ps1_and_gaia_context_use_published_columns() -> None:
    stars, galaxies = true_stars(PIX, SEED), true_galaxies(PIX, SEED)
    ps1 = make_ps1_like(stars, galaxies, SEED, PIX)
    gaia = make_gaia_like(stars, SEED, PIX)
    bright = ps1[ps1["rMeanPSFMag"] < 17].iloc[:5]
    # Candidates 0.5" north of five bright PS1 objects, and one far from everything.
    cand = pd.DataFrame({"ra": [*bright["raMean"], 0.0],
                         "dec": [*(bright["decMean"] + 0.5 / 3600), -89.0]})

    ctx = ps1_context(cand, ps1)
    assert np.array_equal(ctx["objectidps1"][:5], bright["objID"])
    np.testing.assert_allclose(ctx["srmag1"][:5], bright["rMeanPSFMag"])
    np.testing.assert_allclose(ctx["sgscore1"][:5], bright["ps_score"])
    np.testing.assert_allclose(ctx["distpsnr1"][:5], 0.5, atol=1e-3)
    assert (ctx["nmtchps"][:5] >= 1).all() and ctx["nmtchps"].iloc[5] == 0
    assert ctx["objectidps1"].iloc[5] == -999 and np.isnan(ctx["sgscore1"].iloc[5])

    g = gaia_context(cand, gaia)
    assert g["neargaia"][:5].notna().all() and np.isnan(g["neargaia"].iloc[5])
    assert g["maggaia"][:5].between(3, 20.8).all()
