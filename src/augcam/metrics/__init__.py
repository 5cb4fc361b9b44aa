"""Per-image comparison metrics (CAM maps, class probabilities, masks) and per-model performance.

    compare_maps(base, other)          # (N, H, W) × 2 -> {"mad", "msd", "pearson", "spearman", "overlap_20", ...}
    overlap_rate(base, other, 10)      # -> Tensor[N]
    class_kld(p_base, p_aug)           # (N, K) × 2 -> Tensor[N]
    performance(y_true, y_pred, K)     # -> {"accuracy", "precision", "recall", "f1"}

Every metric is one entry of the registry `METRICS` (`augcam.metrics.registry`): its kind, display
name and direction next to its implementation. A metric registered with ``@register_metric`` (or
``@register_map_metric("name")`` for a comparison of two maps) appears in compare_maps, the study's
tables, its figures and its report. Importing this package registers every built-in metric.
"""

from augcam.metrics import localisation as _localisation  # noqa: F401  (registers the mask metrics)
from augcam.metrics import saliency as _saliency  # noqa: F401  (registers cc, kl, entropy)
from augcam.metrics.maps import (
    MAP_METRICS,
    average_ranks,
    compare_maps,
    mad,
    msd,
    overlap_key,
    overlap_rate,
    pearson,
    register_map_metric,
    spearman,
)
from augcam.metrics.performance import confusion_matrix, performance
from augcam.metrics.predictions import class_kld
from augcam.metrics.registry import (
    METRICS,
    MetricSpec,
    column_display_name,
    column_higher_is_better,
    register_metric,
)

__all__ = [
    "MAP_METRICS",
    "METRICS",
    "MetricSpec",
    "average_ranks",
    "class_kld",
    "column_display_name",
    "column_higher_is_better",
    "compare_maps",
    "confusion_matrix",
    "mad",
    "msd",
    "overlap_key",
    "overlap_rate",
    "pearson",
    "performance",
    "register_map_metric",
    "register_metric",
    "spearman",
]
