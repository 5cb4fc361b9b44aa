"""Stage 5's analyses on small hand-made tables whose answers are known in advance."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from augcam.analysis import (
    SEGMENTS,
    correlation_heatmap,
    correlation_maps,
    display_name,
    extreme_images,
    metric_boxplot,
    metric_columns,
    pair_frequencies,
    performance_bars,
    performance_summary,
    segment,
    segment_counts,
    segment_medians,
    segmented_boxplot,
    summary_table,
)

AUGS = ["affine", "blur", "crop", "flip"]
METRICS = ["mad", "pearson", "overlap_20"]
N_IMAGES = 40


def aggregated_table(columns: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    """An aggregated.parquet-like table from {augmentation: {metric: values per image}}."""
    frames = []
    for aug, values in columns.items():
        n = len(next(iter(values.values())))
        frames.append(
            pd.DataFrame(
                {
                    "augmentation": aug,
                    "image_index": np.arange(100, 100 + n),
                    "label": np.arange(n) % 3,
                    "baseline_pred": np.arange(n) % 3,
                    "n_models": 2,
                    **values,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def planted():
    """affine and blur perfectly correlated in every metric (blur = 2·affine + 1); flip perfectly
    anti-correlated with affine (flip = −affine); crop independent noise."""
    rng = np.random.default_rng(0)
    base = {m: rng.normal(size=N_IMAGES) for m in METRICS}
    return aggregated_table(
        {
            "affine": base,
            "blur": {m: 2 * v + 1 for m, v in base.items()},
            "crop": {m: rng.normal(size=N_IMAGES) for m in METRICS},
            "flip": {m: -v for m, v in base.items()},
        }
    )


def test_metric_columns_come_from_the_table_and_names_from_the_display_map():
    table = aggregated_table({"a": {"mad": np.zeros(3), "my_metric": np.ones(3), "overlap_7.5": np.ones(3)}})
    assert metric_columns(table) == ["mad", "my_metric", "overlap_7.5"]
    assert [display_name(c) for c in ("mad", "msd", "overlap_20", "overlap_7.5", "class_kld", "my_metric")] == [
        "MAD",
        "MSD",
        "Overlap Rate@20%",
        "Overlap Rate@7.5%",
        "Class-KLD",
        "my_metric",
    ]


def test_correlation_maps_equal_numpy_corrcoef(planted):
    maps = correlation_maps(planted, AUGS)
    assert list(maps) == METRICS
    for metric, corr in maps.items():
        assert list(corr.index) == AUGS and list(corr.columns) == AUGS
        wide = np.stack([planted.loc[planted.augmentation == a, metric].to_numpy() for a in AUGS])
        np.testing.assert_allclose(corr.to_numpy(), np.corrcoef(wide), atol=1e-12)
        assert corr.loc["affine", "blur"] == pytest.approx(1.0)
        assert corr.loc["affine", "flip"] == pytest.approx(-1.0)


def test_a_pair_correlated_in_every_metric_is_counted_in_every_map(planted):
    strongest, weakest = pair_frequencies(correlation_maps(planted, AUGS), k=1)
    assert strongest.iloc[0].to_dict() == {
        "pair": "affine – blur",
        "count": len(METRICS),
        "metrics": ", ".join(METRICS),
    }
    assert len(strongest) == 1
    # flip is anti-correlated with both affine and blur (r = −1 for both); ties go in study order.
    assert weakest.iloc[0].to_dict() == {"pair": "affine – flip", "count": len(METRICS), "metrics": ", ".join(METRICS)}


def test_pair_tables_take_k_pairs_per_map_and_sort_by_count(planted):
    maps = correlation_maps(planted, AUGS)
    for k in (2, 4):
        strongest, weakest = pair_frequencies(maps, k=k)
        assert strongest["count"].sum() == k * len(METRICS)
        assert weakest["count"].sum() == k * len(METRICS)
        assert list(strongest["count"]) == sorted(strongest["count"], reverse=True)
        assert list(strongest.columns) == ["pair", "count", "metrics"]
    # With k = 6 every one of the 4·3/2 pairs is taken from every map.
    strongest, _ = pair_frequencies(maps, k=6)
    assert len(strongest) == 6 and (strongest["count"] == len(METRICS)).all()
    with pytest.raises(ValueError, match="k must be at least 1"):
        pair_frequencies(maps, k=0)


def test_undefined_correlations_are_never_ranked():
    rng = np.random.default_rng(1)
    table = aggregated_table(
        {"a": {"m": rng.normal(size=10)}, "b": {"m": rng.normal(size=10)}, "const": {"m": np.full(10, 0.5)}}
    )
    corr = correlation_maps(table, ["a", "b", "const"])["m"]
    assert np.isnan(corr.loc["a", "const"])
    strongest, weakest = pair_frequencies({"m": corr}, k=4)
    assert list(strongest["pair"]) == ["a – b"] and list(weakest["pair"]) == ["a – b"]


def per_model_metrics() -> pd.DataFrame:
    """Two augmentations × two seeds over 6 images with known prediction agreement."""
    label = np.array([0, 1, 2, 0, 1, 2])
    base = np.array([0, 1, 0, 1, 1, 2])  # baseline right on images 0, 1, 4, 5
    preds = {
        ("affine", 0): [0, 0, 0, 0, 1, 1],  # both 0,4 | both wrong 2 | only base 1,5 | only aug 3
        ("affine", 1): [0, 1, 2, 0, 1, 2],  # all right: both 0,1,4,5 | only aug 2,3
        ("blur", 0): [1, 0, 0, 1, 0, 0],  # nothing right: only base 0,1,4,5 | both wrong 2,3
        ("blur", 1): [0, 1, 1, 1, 1, 2],
    }  # both 0,1,4,5 | both wrong 2,3
    rows = []
    for (aug, seed), pred in preds.items():
        rows.append(
            pd.DataFrame(
                {
                    "model_id": f"{aug}-s{seed}",
                    "augmentation": aug,
                    "seed": pd.array([seed] * 6, dtype="Int64"),
                    "image_index": np.arange(6),
                    "label": label,
                    "baseline_pred": base,
                    "model_pred": pred,
                    "mad": np.arange(6) / 10 + seed,
                    "pearson": np.linspace(-1, 1, 6),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def test_segments_are_the_prediction_agreement_with_the_baseline():
    metrics = per_model_metrics()
    counts = segment_counts(metrics, ["baseline", "blur", "affine"])
    columns = [s.replace(" ", "_") for s in SEGMENTS]
    assert list(counts.columns) == ["augmentation", "seed", *columns, "images"]
    assert list(zip(counts.augmentation, counts.seed)) == [("blur", 0), ("blur", 1), ("affine", 0), ("affine", 1)]
    expected = {
        ("affine", 0): [2, 1, 2, 1],
        ("affine", 1): [4, 0, 0, 2],
        ("blur", 0): [0, 2, 4, 0],
        ("blur", 1): [4, 2, 0, 0],
    }
    for row in counts.itertuples(index=False):
        assert [getattr(row, c) for c in columns] == expected[(row.augmentation, row.seed)]
    # Every model's segments add up to the number of test images.
    assert (counts["images"] == 6).all()
    assert (counts[columns].sum(axis=1) == 6).all()
    seg = segment(metrics)
    assert seg.iloc[2] == "both wrong" and seg.iloc[3] == "only augmented correct"


def test_segment_medians_match_pandas_on_the_pooled_rows():
    metrics = per_model_metrics()
    medians = segment_medians(metrics, ["affine", "blur"])
    seg = segment(metrics).astype(str)
    for row in medians.itertuples(index=False):
        chosen = metrics[(metrics.augmentation == row.augmentation) & (seg == row.segment)]
        assert row.rows == len(chosen)
        assert row.mad == pytest.approx(np.median(chosen.mad))
    assert medians.rows.sum() == len(metrics)


def test_extreme_images_are_the_planted_ones():
    rng = np.random.default_rng(2)
    values = {a: rng.uniform(0.4, 0.6, size=30) for a in AUGS}
    values["affine"][7] = values["blur"][7] = values["crop"][7] = values["flip"][7] = 0.95  # highest mean
    for k, a in enumerate(AUGS):  # highest spread across augmentations, mean 0.5
        values[a][19] = 0.5 + (0.45 if k % 2 else -0.45)
    table = aggregated_table({a: {"mad": v, "pearson": -v} for a, v in values.items()})
    extremes = extreme_images(table).set_index(["metric", "criterion"])
    assert extremes.loc[("mad", "highest mean"), "image_index"] == 107
    assert extremes.loc[("mad", "highest mean"), "value"] == pytest.approx(0.95)
    assert extremes.loc[("mad", "highest std"), "image_index"] == 119
    assert extremes.loc[("mad", "highest std"), "value"] == pytest.approx(np.std([0.05, 0.95] * 2, ddof=1))
    assert extremes.loc[("pearson", "highest std"), "image_index"] == 119
    assert extremes.loc[("pearson", "highest mean"), "image_index"] != 107  # −0.95 is the lowest there


def performance_table() -> pd.DataFrame:
    rows = [("baseline-x", "baseline", None, "complete", 0.70, 0.71, 0.70, 0.69)]
    accuracy = {"affine": [0.72, 0.74, 0.73], "blur": [0.60, 0.65, np.nan]}
    for aug, values in accuracy.items():
        for seed, acc in enumerate(values):
            status = "complete" if not np.isnan(acc) else "diverged"
            rows.append((f"{aug}-s{seed}", aug, seed, status, acc, acc - 0.01, acc, acc - 0.02))
    return pd.DataFrame(
        rows, columns=["model_id", "augmentation", "seed", "status", "test_accuracy", "precision", "recall", "f1"]
    ).astype({"seed": "Int64"})


def test_performance_summary_is_mean_and_std_over_finished_seeds_baseline_first():
    summary = performance_summary(performance_table()).set_index("augmentation")
    assert list(summary.index) == ["baseline", "affine", "blur"]
    assert summary.loc["affine", "n_models"] == 3 and summary.loc["blur", "n_models"] == 2
    assert summary.loc["affine", "test_accuracy_mean"] == pytest.approx(np.mean([0.72, 0.74, 0.73]))
    assert summary.loc["affine", "test_accuracy_std"] == pytest.approx(np.std([0.72, 0.74, 0.73], ddof=1))
    assert summary.loc["blur", "f1_mean"] == pytest.approx(np.mean([0.58, 0.63]))
    assert np.isnan(summary.loc["baseline", "test_accuracy_std"])


def test_summary_numbers_match_numpy():
    rng = np.random.default_rng(3)
    mad = {"affine": rng.uniform(size=25), "blur": rng.uniform(size=25)}
    pearson = {"affine": rng.uniform(-1, 1, size=25), "blur": rng.uniform(-1, 1, size=25)}
    pearson["blur"][[3, 9]] = np.nan
    aggregated = aggregated_table({a: {"mad": mad[a], "pearson": pearson[a]} for a in mad})
    per_model = aggregated.assign(model_id=aggregated.augmentation + "-s0", seed=0, model_pred=0)
    # NaN in the per-model table: affine row 0; blur rows 30, 31 plus its two copied from above.
    per_model.loc[[0, 30, 31], "pearson"] = np.nan
    summary = summary_table(performance_table(), aggregated, per_model).set_index("augmentation")
    assert list(summary.index) == ["baseline", "affine", "blur"]
    for aug in mad:
        for metric, values in (("mad", mad[aug]), ("pearson", pearson[aug])):
            defined = values[~np.isnan(values)]
            assert summary.loc[aug, f"{metric}_median"] == pytest.approx(np.median(defined))
            q1, q3 = np.percentile(defined, [25, 75])
            assert summary.loc[aug, f"{metric}_iqr"] == pytest.approx(q3 - q1)
    assert summary.loc["affine", "pearson_nan"] == 1 and summary.loc["blur", "pearson_nan"] == 4
    assert summary.loc["blur", "mad_nan"] == 0
    assert summary.loc["affine", "test_accuracy_mean"] == pytest.approx(0.73)
    assert summary.loc["affine", "test_accuracy_std"] == pytest.approx(np.std([0.72, 0.74, 0.73], ddof=1))
    assert pd.isna(summary.loc["baseline", "mad_median"])


def test_figures_show_one_box_or_cell_per_item(planted):
    fig = metric_boxplot(planted, "mad", ["baseline", *AUGS])
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == AUGS
    assert len(list(ax.patches)) == len(AUGS)  # one box per augmentation
    corr = correlation_maps(planted, AUGS)["pearson"]
    heat = correlation_heatmap(corr, "pearson")
    cell_texts = [t.get_text() for t in heat.axes[0].texts]
    assert len(cell_texts) == len(AUGS) ** 2 and "1.00" in cell_texts and "-1.00" in cell_texts
    metrics = per_model_metrics()
    seg = segmented_boxplot(metrics, "mad", ["affine", "blur"])
    counts = [int(t.get_text()) for t in seg.axes[0].texts]
    assert counts == [2 + 4, 1 + 0, 2 + 0, 1 + 2, 0 + 4, 2 + 2, 4 + 0, 0 + 0]  # pooled over the two seeds
    bars = performance_bars(performance_table(), ["baseline", "affine", "blur"])
    assert [len(ax.patches) for ax in bars.axes] == [3, 3, 3, 3]


# --- the thesis's figures and tables are over the studied augmentations, not the controls --------

THESIS_AUGS = ["affine", "cutmix", "color_jitter", "elastic", "equalization", "gaussian_blur", "random_crop"]


def with_control() -> pd.DataFrame:
    """The thesis's seven augmentations and the identity control, whose values are planted to win
    every ranking: perfectly (anti-)correlated with affine and extreme on image 105."""
    rng = np.random.default_rng(5)
    values = {a: {m: rng.uniform(0.2, 0.8, size=30) for m in METRICS} for a in THESIS_AUGS}
    values["identity"] = {m: v.copy() for m, v in values["affine"].items()}
    values["identity"]["pearson"] = -values["affine"]["pearson"]
    for m in METRICS:
        values["identity"][m][5] = 50.0
    return aggregated_table(values)


def test_pairs_and_correlation_maps_count_the_21_pairs_of_seven_augmentations_with_the_control_present():
    table = with_control()
    maps = correlation_maps(table, ["baseline", *THESIS_AUGS, "identity"])
    assert all(list(corr.columns) == THESIS_AUGS and list(corr.index) == THESIS_AUGS for corr in maps.values())
    strongest, weakest = pair_frequencies(maps, k=100)
    assert len(strongest) == len(weakest) == 21  # C(7, 2); with the control it would be C(8, 2) = 28
    assert not strongest["pair"].str.contains("identity").any()
    top, bottom = pair_frequencies(maps, k=4)
    assert top["count"].sum() == bottom["count"].sum() == 4 * len(METRICS)
    assert not pd.concat([top, bottom])["pair"].str.contains("identity").any()


def test_extreme_images_and_segments_ignore_the_control():
    extremes = extreme_images(with_control())
    assert 105 not in set(extremes["image_index"]), "the control's values chose an image"
    assert extremes["value"].max() < 1
    metrics = per_model_metrics()
    control = metrics[metrics.augmentation == "affine"].assign(augmentation="identity", model_id="identity-s0")
    mixed = pd.concat([metrics, control], ignore_index=True)
    assert list(segment_counts(mixed)["augmentation"].unique()) == ["affine", "blur"]
    assert set(segment_medians(mixed)["augmentation"]) == {"affine", "blur"}
    seg = segmented_boxplot(mixed, "mad", ["baseline", "affine", "blur", "identity"])
    assert "identity (control)" not in [t.get_text() for t in seg.axes[0].get_xticklabels()]


def test_the_control_is_drawn_apart_as_a_reference():
    table = with_control()
    fig = metric_boxplot(table, "mad", ["baseline", "identity", *THESIS_AUGS])  # control listed early on purpose
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == [*THESIS_AUGS, "identity (control)"], "the control last"
    boxes = list(ax.patches)
    assert [bool(p.get_hatch()) for p in boxes] == [False] * 7 + [True]
    assert any(line.get_linestyle() == "--" for line in ax.lines), "a dashed line sets it apart"
    performance = performance_table()
    control_rows = performance[performance.augmentation == "affine"].assign(augmentation="identity")
    bars = performance_bars(pd.concat([performance, control_rows]), ["baseline", "identity", "affine", "blur"])
    ax = bars.axes[0]
    assert [p.get_hatch() for p in ax.patches] == [None, None, None, "///"]
