"""Impact profiles recover planted groups of augmentations; distances match a NumPy computation."""

import numpy as np
import pandas as pd

from augcam.analysis.impact_profiles import cluster_table, impact_clusters, profile_matrix


def _aggregated(n=200, seed=0):
    rng = np.random.default_rng(seed)
    group_a, group_b = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
    rows = []
    profiles = {
        "affine": group_a,
        "random_crop": group_a,
        "elastic": group_a,
        "color_jitter": group_b,
        "equalization": group_b,
    }
    for aug, base in profiles.items():
        values = base + rng.normal(0, 0.05, n)
        msd = (base + rng.normal(0, 0.05, n)) / 50  # another scale: standardisation must even it out
        rows += [
            {"augmentation": aug, "image_index": i, "pearson": v, "msd": m} for i, (v, m) in enumerate(zip(values, msd))
        ]
    return pd.DataFrame(rows)


def test_planted_groups_are_recovered_for_every_scope():
    table = cluster_table(_aggregated(), ["pearson", "msd"])
    assert set(table["scope"]) == {"all", "pearson", "msd"}
    for _, scope in table.groupby("scope"):
        cluster = scope.set_index("augmentation")["cluster"]
        assert cluster["affine"] == cluster["random_crop"] == cluster["elastic"]
        assert cluster["color_jitter"] == cluster["equalization"]
        assert cluster["affine"] != cluster["color_jitter"]
        assert sorted(scope["leaf_order"]) == list(range(5))


def test_profiles_are_standardised_per_metric_and_nan_is_neutral():
    aggregated = _aggregated(n=20)
    aggregated.loc[0, "pearson"] = np.nan
    profiles = profile_matrix(aggregated, ["pearson", "msd"])
    assert list(profiles.index) == ["affine", "random_crop", "elastic", "color_jitter", "equalization"]
    msd = profiles["msd"].to_numpy()
    assert abs(msd.mean()) < 1e-12 and abs(msd.std() - 1) < 1e-12
    pearson = aggregated.pivot(index="augmentation", columns="image_index", values="pearson")
    assert profiles.loc["affine", ("pearson", 0)] == 0.0  # NaN → the metric's mean
    expected = (pearson.loc["elastic", 3] - np.nanmean(pearson)) / np.nanstd(pearson)
    assert np.isclose(profiles.loc["elastic", ("pearson", 3)], expected)


def test_merge_heights_are_rms_distances():
    aggregated = _aggregated(n=30)
    result = impact_clusters(aggregated, ["pearson"])
    profiles = profile_matrix(aggregated, ["pearson"]).to_numpy()
    # The first merge joins the closest pair at exactly their RMS distance.
    rms = np.sqrt(((profiles[:, None, :] - profiles[None, :, :]) ** 2).mean(axis=2))
    np.fill_diagonal(rms, np.inf)
    assert np.isclose(result["linkage"][0, 2], rms.min())
    assert result["threshold"] == 0.7 * result["linkage"][:, 2].max()
