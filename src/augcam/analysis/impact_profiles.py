"""Impact profiles: which augmentations change the CAMs in the same way?

Each augmentation's *profile* is its vector of seed-averaged metric values over the test images
(one metric, or every metric side by side). Metrics live on different scales (MSD ~0.02, Pearson
~0.9), so each metric is standardised over all augmentations × images before profiles are built;
a value that is undefined (NaN) becomes the metric's mean, i.e. contributes no difference. The
distance between two profiles is their RMS difference; augmentations are grouped by average-linkage
hierarchical clustering (SciPy), and clusters are cut where SciPy's dendrogram draws its colour
threshold (0.7 × the largest merge distance), so the table and the figure tell the same story.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from augcam.analysis.run_tables import metric_columns, ordered_like

__all__ = ["profile_matrix", "impact_clusters", "cluster_table", "impact_clusters_table"]

COLOR_THRESHOLD_RATIO = 0.7  # scipy.cluster.hierarchy.dendrogram's default colour threshold


def profile_matrix(aggregated: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Rows: augmentations (in table order); columns: (metric, image_index), standardised per metric."""
    blocks = []
    for metric in metrics:
        wide = aggregated.pivot(index="augmentation", columns="image_index", values=metric)
        values = wide.to_numpy(np.float64)
        mean, std = np.nanmean(values), np.nanstd(values)
        standardised = (values - mean) / std if std > 0 else values - mean
        blocks.append(
            pd.DataFrame(
                np.nan_to_num(standardised, nan=0.0),
                index=wide.index,
                columns=pd.MultiIndex.from_product([[metric], wide.columns]),
            )
        )
    order = list(dict.fromkeys(aggregated["augmentation"]))
    return pd.concat(blocks, axis=1).loc[order]


def impact_clusters(aggregated: pd.DataFrame, metrics: Sequence[str]) -> dict:
    """Average-linkage clustering of the augmentations' profiles over `metrics`.

    Returns {"labels": augmentation names, "linkage": SciPy linkage matrix, "clusters": cluster
    number per augmentation (1-based), "threshold": the cut distance, "leaves": dendrogram order}."""
    from scipy.cluster import hierarchy
    from scipy.spatial.distance import pdist

    profiles = profile_matrix(aggregated, metrics)
    labels = list(profiles.index)
    if len(labels) < 2:
        return {
            "labels": labels,
            "linkage": np.zeros((0, 4)),
            "clusters": [1] * len(labels),
            "threshold": 0.0,
            "leaves": list(range(len(labels))),
        }
    distances = pdist(profiles.to_numpy(), metric="euclidean") / np.sqrt(profiles.shape[1])
    linkage = hierarchy.linkage(distances, method="average")
    threshold = COLOR_THRESHOLD_RATIO * float(linkage[:, 2].max())
    clusters = (
        hierarchy.fcluster(linkage, t=threshold, criterion="distance")
        if threshold > 0
        else np.ones(len(labels), dtype=int)
    )
    leaves = hierarchy.leaves_list(linkage).tolist()
    return {
        "labels": labels,
        "linkage": linkage,
        "clusters": [int(c) for c in clusters],
        "threshold": threshold,
        "leaves": leaves,
    }


def cluster_table(aggregated: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """`tables/clusters.csv`: for every metric alone and for all metrics combined (`scope` = "all"),
    each augmentation's cluster and its position in the dendrogram's leaf order."""
    rows = []
    for scope, scope_metrics in [("all", list(metrics))] + [(m, [m]) for m in metrics]:
        result = impact_clusters(aggregated, scope_metrics)
        position = {leaf: i for i, leaf in enumerate(result["leaves"])}
        for i, augmentation in enumerate(result["labels"]):
            rows.append(
                {
                    "scope": scope,
                    "augmentation": augmentation,
                    "cluster": result["clusters"][i],
                    "leaf_order": position[i],
                    "cut_distance": result["threshold"],
                }
            )
    return pd.DataFrame(rows)


def impact_clusters_table(
    aggregated: pd.DataFrame, metrics: list[str] | None = None, order: list[str] | None = None
) -> pd.DataFrame:
    """`cluster_table` with the augmentations in study order: per scope (all metrics combined, then
    each metric alone) each augmentation's cluster, dendrogram leaf position and the distance the
    dendrogram is cut at."""
    metrics = metric_columns(aggregated) if metrics is None else list(metrics)
    augs = ordered_like(aggregated["augmentation"], order or [])
    rank = aggregated["augmentation"].map({a: i for i, a in enumerate(augs)})
    ordered = aggregated.assign(_rank=rank).sort_values("_rank", kind="stable").drop(columns="_rank")
    return cluster_table(ordered, metrics)
