"""Samples whose label looks wrong, read from one training run's per-sample dynamics.

A sample is a suspect when, over the visits training made to it, the model's prediction disagreed
with its label at most of them (Data Maps correctness below one half; Swayamdipta et al. 2020):
a clean sample is learnt early and stays learnt, a flipped one is fought for most of the run.
Suspects are ranked by confidence, the mean probability the model gave their label (lowest first).
``bench/label_noise.py`` measures this against cleanlab on planted label noise.
"""

from __future__ import annotations

import pandas as pd

from ..errors import ConfigurationError

MIN_VISITS = 2  # one visit says nothing about a sample's dynamics
SUSPECT_COLUMNS = ("index", "label", "prediction", "confidence", "correctness", "variability", "forgets",
                   "loss", "seen")


def suspects(frame: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """The rows of ``frame`` (a classification slice) whose correctness is below ``threshold``,
    seen at least twice, most suspect first."""
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 < threshold <= 1:
        raise ConfigurationError(f"suspects(threshold=...) is a share of visits in (0, 1], got {threshold!r}")
    if "correctness" not in frame:
        raise ConfigurationError("suspects() needs a classification run (integer labels, logits per class); "
                                 "this run's outputs are not classification, so no label can be judged")
    chosen = frame[(frame["seen"] >= MIN_VISITS) & (frame["correctness"] < threshold)]
    return chosen.sort_values(["confidence", "index"], kind="stable")[list(SUSPECT_COLUMNS)].reset_index(drop=True)
