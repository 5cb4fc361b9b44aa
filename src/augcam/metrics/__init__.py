"""Per-image comparison metrics (CAM maps, class probabilities) and per-model performance.

    compare_maps(base, other)          # (N, H, W) × 2 -> {"mad", "msd", "pearson", "spearman", "overlap_20", ...}
    overlap_rate(base, other, 10)      # -> Tensor[N]
    class_kld(p_base, p_aug)           # (N, K) × 2 -> Tensor[N]
    performance(y_true, y_pred, K)     # -> {"accuracy", "precision", "recall", "f1"}

New map metrics are registered with ``@register_map_metric("name")`` and appear in compare_maps.
"""

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

__all__ = [
    "MAP_METRICS",
    "average_ranks",
    "class_kld",
    "compare_maps",
    "confusion_matrix",
    "mad",
    "msd",
    "overlap_key",
    "overlap_rate",
    "pearson",
    "performance",
    "register_map_metric",
    "spearman",
]
