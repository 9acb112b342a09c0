"""How well ``session.suspects()`` finds mislabeled samples in one training run, side by side with
cleanlab's ``find_label_issues`` on 5-fold cross-validated probabilities (the usual recipe; it trains
five models). Labels of scikit-learn's digits, breast cancer and wine data are moved to another
class at random at 10, 20 and 40 %; 3 seeds; the truth is the mask of moved labels.

Ours: a 64-unit MLP trained by ``Session`` (Adam 1e-3, batch 32, ``--epochs``) on every sample;
the suspects are the samples the model disagreed with at most visits, ranked by confidence (AUROC
from confidence). cleanlab: scikit-learn's ``MLPClassifier`` of the same shape, AUROC from its
label-quality score. Also the AUROC of ``forgets`` (never learnt counted as most forgotten).

    .venv/bin/pip install -e '.[bench]'   # cleanlab: only this benchmark needs it
    .venv/bin/python bench/label_noise.py [--epochs 30] [--seeds 3]
"""

from __future__ import annotations

import argparse
import logging
import warnings

import numpy as np
import pandas as pd
import torch
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score
from sklearn.model_selection import cross_val_predict
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from onthefly_nb import Session

DATASETS = {"digits": load_digits, "breast cancer": load_breast_cancer, "wine": load_wine}
RATES = (0.1, 0.2, 0.4)


def noisy(load, rate: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardised inputs, labels with ``rate`` of them moved to another class, and the moved mask."""
    x, y = load(return_X_y=True)
    x = StandardScaler().fit_transform(x).astype(np.float32)
    rng = np.random.default_rng(seed)
    classes = int(y.max()) + 1
    moved = rng.random(len(y)) < rate
    labels = y.copy()
    labels[moved] = (y[moved] + rng.integers(1, classes, moved.sum())) % classes
    return x, labels, moved


def scores(truth: np.ndarray, found: np.ndarray, ranking: np.ndarray) -> dict[str, float]:
    return {"precision": precision_score(truth, found, zero_division=0), "recall": recall_score(truth, found),
            "F1": f1_score(truth, found), "AUROC": roc_auc_score(truth, ranking)}


def ours(x: np.ndarray, labels: np.ndarray, moved: np.ndarray, seed: int, epochs: int) -> dict[str, float]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(x.shape[1], 64), nn.ReLU(), nn.Linear(64, int(labels.max()) + 1))
    data = TensorDataset(torch.from_numpy(x), torch.from_numpy(labels).long())
    session = Session(model, torch.optim.Adam(model.parameters(), lr=1e-3), nn.CrossEntropyLoss(),
                      DataLoader(data, batch_size=32, shuffle=True), max_epochs=epochs, seed=seed,
                      recluster_seconds=None, health_every=None).run()
    found = np.zeros(len(labels), bool)
    found[session.suspects()["index"].to_numpy()] = True
    frame = session.slice(features=False).set_index("index").sort_index()
    result = scores(moved, found, -frame["confidence"].to_numpy())
    result["forgets AUROC"] = roc_auc_score(moved, frame["forgets"].replace(np.inf, np.finfo(np.float32).max))
    return result


def cleanlab_cv(x: np.ndarray, labels: np.ndarray, moved: np.ndarray, seed: int) -> dict[str, float]:
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    model = MLPClassifier(hidden_layer_sizes=(64,), max_iter=300, random_state=seed)
    probabilities = cross_val_predict(model, x, labels, cv=5, method="predict_proba")
    found = find_label_issues(labels, probabilities)
    return scores(moved, found, -get_label_quality_scores(labels, probabilities))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("onthefly_nb").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    rows = []
    for name, load in DATASETS.items():
        for rate in RATES:
            for seed in range(args.seeds):
                x, labels, moved = noisy(load, rate, seed)
                for method, result in (("onthefly_nb suspects()", ours(x, labels, moved, seed, args.epochs)),
                                       ("cleanlab, 5-fold CV", cleanlab_cv(x, labels, moved, seed))):
                    rows.append({"data": name, "noise": f"{rate:.0%}", "method": method, **result})
    table = pd.DataFrame(rows).groupby(["data", "noise", "method"], sort=False).mean(numeric_only=True)
    print(f"mean of {args.seeds} seeds; ours trained {args.epochs} epochs, once")
    print(table.round(3).to_string())
    print("\nmean F1 over all 9 settings:")
    print(table.groupby(level="method", sort=False)["F1"].mean().round(3).to_string())


if __name__ == "__main__":
    main()
