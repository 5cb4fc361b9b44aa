"""How reports, figures and tables name metrics and CAM methods, and which way a metric points.

Metric and CAM-method names come from their registries (`augcam.metrics.registry`,
`augcam.cams.CAM_METHODS`), so a metric or method registered from Python is named and oriented
like the built-in ones; the columns that are not metrics (performance) are named here.
"""

from __future__ import annotations

from augcam.cams import cam_method_display_name
from augcam.metrics import column_display_name, column_higher_is_better

__all__ = ["display_name", "higher_is_better", "method_name"]

# Table columns that no metric writes: per-model performance.
_COLUMN_NAMES = {
    "test_accuracy": "test accuracy",
    "precision": "macro precision",
    "recall": "macro recall",
    "f1": "macro F1",
    "roc_auc": "ROC AUC",
}


def display_name(column: str) -> str:
    """The name a reader knows a column by: `overlap_20` → `Overlap Rate@20%`, `mad` → `MAD`;
    a column nothing names is shown as it is."""
    if column in _COLUMN_NAMES:
        return _COLUMN_NAMES[column]
    name = column_display_name(column)
    return column if name is None else name


def higher_is_better(column: str) -> bool:
    """Whether a higher value of a metric column means a CAM closer to the other one (a
    similarity); False for a distance (MAD, Class-KLD). A column no metric writes counts as a
    similarity."""
    direction = column_higher_is_better(column)
    return True if direction is None else direction


def method_name(method: str) -> str:
    """A CAM method's name as the literature writes it: `gradcam` → `Grad-CAM`."""
    return cam_method_display_name(method)
