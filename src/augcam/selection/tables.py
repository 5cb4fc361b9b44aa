"""An architecture selection's numbers: the per-epoch table of every candidate's models, computed
from their stored histories and per-epoch predictions; the per-candidate summary; and the rule
that chooses one candidate.

The rule reads validation data only: the candidate with the best mean (over seeds) validation
accuracy at its best epoch — the checkpoint a study would explain — wins; candidates within
`tie_tolerance` of the best count as tied, and the one with the least training time among them
wins (then the one listed first). The test curves are shown, never used to choose: a choice made
on the test set would make every later test number of the chosen model optimistic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from augcam.atomic import read_tensors
from augcam.errors import AugcamError
from augcam.metrics.performance import performance
from augcam.rundir import RunDir

__all__ = ["PARTS", "SCORES", "epoch_rows", "candidate_epochs", "summarise", "choose"]

PARTS = ("val", "test")
SCORES = ("accuracy", "precision", "recall", "f1")  # metrics.performance's, macro-averaged


def epoch_rows(history: pd.DataFrame, predictions: dict, num_classes: int) -> pd.DataFrame:
    """One row per epoch of one model: its history (losses, training accuracy, seconds) and, from
    the stored predictions of that epoch, validation and test accuracy and macro precision, recall
    and F1 (augcam.metrics.performance)."""
    rows = []
    for index, record in enumerate(history.to_dict("records")):
        row = {
            "epoch": int(record["epoch"]),
            "train_loss": record["train_loss"],
            "train_accuracy": record["train_accuracy"],
            "val_loss": record["val_loss"],
            "test_loss": record["test_loss"],
        }
        for part in PARTS:
            scores = performance(predictions[f"{part}_labels"], predictions[f"{part}_predictions"][index], num_classes)
            row.update({f"{part}_{name}": scores[name] for name in SCORES})
        row["seconds"] = record["seconds"]
        row["test_seconds"] = record["test_seconds"]
        rows.append(row)
    table = pd.DataFrame(rows)
    table["cumulative_seconds"] = table["seconds"].cumsum()
    return table


def candidate_epochs(run_dir: RunDir, label: str, runs: Sequence, num_classes: int) -> tuple[pd.DataFrame, int]:
    """(the per-epoch rows of a candidate's complete models, how many of its models failed), read
    from its run directory."""
    frames, failed = [], 0
    for run in runs:
        meta_path = run_dir.meta_file(run.model_id)
        history_path = run_dir.history_file(run.model_id)
        if not history_path.exists():
            failed += meta_path.exists()
            continue
        try:
            history = pd.read_parquet(history_path)
            predictions = read_tensors(run_dir.predictions_file(run.model_id))
        except (OSError, ValueError) as err:
            raise AugcamError(
                f"{history_path.parent}: cannot read the model's history or predictions ({err})"
            ) from None
        rows = epoch_rows(history, predictions, num_classes)
        rows.insert(0, "model_id", run.model_id)
        rows.insert(0, "seed", run.seed)
        rows.insert(0, "candidate", label)
        frames.append(rows)
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), failed


def best_epochs(epochs: pd.DataFrame) -> pd.DataFrame:
    """Each model's best-validation-accuracy epoch (the first, on ties, as the training loop keeps
    it), with its total training time (training and validation passes, every epoch)."""
    best = epochs.loc[epochs.groupby("model_id", sort=False)["val_accuracy"].idxmax()].copy()
    seconds = epochs.groupby("model_id", sort=False)["seconds"].agg(["sum", "mean"])
    best["train_seconds"] = best["model_id"].map(seconds["sum"])
    best["seconds_per_epoch"] = best["model_id"].map(seconds["mean"])
    return best.rename(columns={"epoch": "best_epoch"})


def summarise(epochs: pd.DataFrame, order: Sequence[str], tie_tolerance: float = 0.0) -> pd.DataFrame:
    """One row per candidate of `order`: means over its seeds (at each seed's best epoch) of the
    validation accuracy (its standard deviation too) and the test scores, the training time, and
    the rule's verdict (`rank`, `tied_with_best`, `chosen`). A candidate without a complete model
    has NaN scores and is never chosen."""
    best = best_epochs(epochs) if len(epochs) else pd.DataFrame(columns=["candidate"])
    columns = ["val_accuracy", *(f"test_{name}" for name in SCORES), "best_epoch", "train_seconds", "seconds_per_epoch"]
    rows = []
    for label in order:
        mine = best[best["candidate"] == label]
        row = {"candidate": label, "seeds": len(mine)}
        for column in columns:
            row[column] = float(mine[column].mean()) if len(mine) else np.nan
        row["val_accuracy_std"] = float(mine["val_accuracy"].std()) if len(mine) > 1 else np.nan
        rows.append(row)
    summary = pd.DataFrame(rows)
    chosen = choose(summary, tie_tolerance)
    position = {label: i for i, label in enumerate(order)}
    ranked = summary.assign(_order=summary["candidate"].map(position)).sort_values(
        ["val_accuracy", "train_seconds", "_order"], ascending=[False, True, True], na_position="last"
    )
    summary["rank"] = summary["candidate"].map({label: i + 1 for i, label in enumerate(ranked["candidate"])})
    summary["tied_with_best"] = summary["val_accuracy"] >= summary["val_accuracy"].max() - tie_tolerance
    summary["chosen"] = summary["candidate"] == chosen
    return summary


def choose(summary: pd.DataFrame, tie_tolerance: float = 0.0) -> str:
    """The rule: among the candidates (rows of `summary`, in their listed order) whose mean
    validation accuracy is within `tie_tolerance` of the best (equal to it, by default), the one
    with the least mean training time; on equal times, the first listed."""
    eligible = summary.dropna(subset=["val_accuracy", "train_seconds"])
    if eligible.empty:
        raise AugcamError("no candidate has a complete model (every one failed to train), so none can be chosen")
    tied = eligible[eligible["val_accuracy"] >= eligible["val_accuracy"].max() - tie_tolerance]
    fastest = tied[tied["train_seconds"] == tied["train_seconds"].min()]
    return str(fastest["candidate"].iloc[0])
