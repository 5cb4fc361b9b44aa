"""The report's trustworthiness sections (noise floor and significance, impact profiles,
augmentation vs augmentation, sanity check) on hand-made run directories whose answers are planted:
an augmentation far from the noise floor next to an identity control that is noise plus symmetric
jitter, two groups of augmentations with different profiles, a falling and a flat sanity curve,
and a run without any control table."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from matplotlib.figure import Figure
from safetensors.torch import save_file

from augcam.analysis import ReportError, between_augmentation_medians, between_heatmaps, between_matrix, write_report
from augcam.analysis.statistics import SIGNIFICANCE_COLUMNS
from augcam.config import load_config

N = 50  # test images
METRICS = ("mad", "pearson")  # few: every metric adds figures to draw
SEEDS = (0, 1)
GROUP_A = ("affine", "random_crop")  # planted far from the noise floor, one profile
GROUP_B = ("color_jitter", "equalization")  # planted near it, another profile
AUGS = (*GROUP_A, *GROUP_B, "identity")
REPLICAS = ("ordering+1", "init+1")
LAYERS = ("(trained model)", "fc", "conv2", "conv1")


def planted_values(rng) -> tuple[dict, dict]:
    """({augmentation: {metric: per-image values}}, {replica: {metric: values}}): the noise floor
    is Pearson ≈ 0.9 / MAD ≈ 0.1; group A sits at Pearson 0.3 / MAD 0.6 with one per-image pattern,
    group B at Pearson 0.7 / MAD 0.25 with another; identity is the noise floor plus jitter whose
    signs are exactly balanced, so its paired differences have median 0."""
    replicas = {r: {"pearson": 0.9 + rng.normal(0, 0.02, N), "mad": 0.1 + rng.normal(0, 0.01, N)} for r in REPLICAS}
    floor = {m: np.mean([replicas[r][m] for r in REPLICAS], axis=0) for m in METRICS}
    pattern_a, pattern_b = rng.normal(0, 1, N), rng.normal(0, 1, N)
    values = {}
    for aug in GROUP_A:
        values[aug] = {
            "pearson": 0.3 + 0.05 * pattern_a + rng.normal(0, 0.005, N),
            "mad": 0.6 + 0.05 * pattern_a + rng.normal(0, 0.005, N),
        }
    for aug in GROUP_B:
        values[aug] = {
            "pearson": 0.7 + 0.05 * pattern_b + rng.normal(0, 0.005, N),
            "mad": 0.25 - 0.05 * pattern_b + rng.normal(0, 0.005, N),
        }
    jitter = rng.uniform(1e-4, 1e-3, N // 2)
    signs = np.r_[jitter, -jitter][rng.permutation(N)]
    values["identity"] = {m: floor[m] + signs for m in METRICS}
    return values, replicas


def sanity_rows(medians, data: float | None) -> list[dict]:
    rows = [
        {
            "test": "cascading",
            "method": "gradcam",
            "step": step,
            "layer": layer,
            "spearman_median": m,
            "spearman_q25": m - 0.05,
            "spearman_q75": m + 0.05,
            "abs_spearman_median": abs(m),
            "n_images": 20,
            "n_undefined": 0,
        }
        for step, (layer, m) in enumerate(zip(LAYERS, medians))
    ]
    if data is not None:
        rows.append(
            {
                "test": "data",
                "method": "gradcam",
                "step": 1,
                "layer": "(labels permuted)",
                "spearman_median": data,
                "spearman_q25": data - 0.1,
                "spearman_q75": data + 0.1,
                "abs_spearman_median": abs(data),
                "n_images": 20,
                "n_undefined": 0,
            }
        )
    return rows


def make_run(out: Path) -> Path:
    """A finished run directory: baseline + the augmentations above × 2 seeds on N test images
    (each seed's metrics equal the planted values, so the seed average does too), with every
    control table. The dataset is not on the machine: the CAM grids are drawn without images."""
    rng = np.random.default_rng(7)
    config = load_config(
        {
            "name": "planted",
            "data": {"dataset": "image-folder", "root": str(out / "no-images")},
            "model": {"name": "small_cnn"},
            "augmentations": [a for a in AUGS if a != "identity"],
            "seeds": list(SEEDS),
            "controls": {"baseline_replicas": 2, "sanity_images": 20, "data_randomization": True},
        }
    )
    out.mkdir(parents=True)
    (out / "study.yaml").write_text(yaml.safe_dump(config.resolved(), sort_keys=False))
    values, replicas = planted_values(rng)
    labels = np.arange(N) % 3
    models = [("baseline-000000000000", "baseline", None)] + [
        (f"{aug}-s{seed}-{k:012d}", aug, seed) for k, (aug, seed) in enumerate((a, s) for a in AUGS for s in SEEDS)
    ]
    (out / "cams").mkdir()
    for model_id, _, _ in models:
        logits = torch.from_numpy(rng.normal(size=(N, 3)).astype(np.float32))
        save_file(
            {
                "raw": torch.from_numpy(rng.uniform(0, 1, size=(N, 4, 4)).astype(np.float32)),
                "logits": logits,
                "predictions": logits.argmax(1),
                "targets": logits.argmax(1),
                "image_index": torch.arange(N),
            },
            str(out / "cams" / f"{model_id}.safetensors"),
        )
        (out / "models" / model_id).mkdir(parents=True)
        pd.DataFrame(
            {
                "epoch": [1, 2],
                "train_loss": [1.0, 0.8],
                "train_accuracy": [0.5, 0.6],
                "val_loss": [1.0, 0.9],
                "val_accuracy": [0.5, 0.55],
            }
        ).to_parquet(out / "models" / model_id / "history.parquet", index=False)
    tables = out / "tables"
    tables.mkdir()
    pd.DataFrame(
        [
            {
                "model_id": mid,
                "augmentation": aug,
                "seed": seed,
                "status": "complete",
                "test_accuracy": 0.7,
                "precision": 0.7,
                "recall": 0.7,
                "f1": 0.7,
            }
            for mid, aug, seed in models
        ]
    ).astype({"seed": "Int64"}).to_parquet(tables / "performance.parquet")
    pred = labels.copy()
    metrics = pd.concat(
        [
            pd.DataFrame(
                {
                    "model_id": mid,
                    "augmentation": aug,
                    "seed": pd.array([seed] * N, dtype="Int64"),
                    "image_index": np.arange(N),
                    "label": labels,
                    "baseline_pred": pred,
                    "model_pred": pred,
                    **{m: values[aug][m] for m in METRICS},
                }
            )
            for mid, aug, seed in models[1:]
        ],
        ignore_index=True,
    )
    metrics.to_parquet(tables / "metrics.parquet", index=False)
    aggregated = (
        metrics.groupby(["augmentation", "image_index"], sort=False)
        .agg(
            label=("label", "first"),
            baseline_pred=("baseline_pred", "first"),
            n_models=("seed", "size"),
            **{m: (m, "mean") for m in METRICS},
        )
        .reset_index()
    )
    aggregated.to_parquet(tables / "aggregated.parquet", index=False)
    pd.concat(
        [
            pd.DataFrame(
                {
                    "model_id": f"baseline-{r.replace('+', '')}",
                    "replica": r,
                    "image_index": np.arange(N),
                    "label": labels,
                    "baseline_pred": pred,
                    "model_pred": pred,
                    **{m: replicas[r][m] for m in METRICS},
                }
            )
            for r in REPLICAS
        ],
        ignore_index=True,
    ).to_parquet(tables / "noise_floor.parquet", index=False)
    between = [
        pd.DataFrame(
            {
                "augmentation_a": a,
                "augmentation_b": b,
                "seed": pd.array([seed] * N, dtype="Int64"),
                "image_index": np.arange(N),
                **{m: rng.uniform(0, 1, N) for m in METRICS},
            }
        )
        for i, a in enumerate(AUGS)
        for b in AUGS[i + 1 :]
        for seed in SEEDS
    ]
    pd.concat(between, ignore_index=True).to_parquet(tables / "between_augmentations.parquet", index=False)
    pd.DataFrame(sanity_rows([1.0, 0.6, 0.25, 0.04], data=0.1)).to_csv(tables / "sanity.csv", index=False)
    (out / "manifest.json").write_text(
        json.dumps(
            {
                "augcam_version": "0.1.0",
                "config_hash": config.config_hash(),
                "device": "cpu",
                "device_name": "x86_64",
                "versions": {},
                "started": None,
                "finished": None,
                "seconds": None,
                "status": "complete",
                "stages": {},
                "controls": {"identity": True, "baseline_replicas": 2, "sanity_images": 20, "data_randomization": True},
            }
        )
    )
    return out


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("runs") / "planted")
    write_report(run)
    return run


def _headings(html: str) -> list[str]:
    return re.findall(r"<h2>\d+\. ([^<]+)</h2>", html)


def test_planted_effect_is_significant_and_identity_is_not(reported):
    table = pd.read_csv(reported / "tables/significance.csv")
    assert list(table.columns) == SIGNIFICANCE_COLUMNS
    for column in (
        "augmentation",
        "metric",
        "median",
        "ci_low",
        "ci_high",
        "noise_floor_median",
        "effect",
        "p_value",
        "p_adjusted",
    ):
        assert column in table.columns
    assert list(dict.fromkeys(table["augmentation"])) == list(AUGS)  # study order
    rows = table.set_index(["augmentation", "metric"])
    for aug in GROUP_A:
        assert bool(rows.loc[(aug, "pearson"), "significant"]) and bool(rows.loc[(aug, "mad"), "significant"])
        assert rows.loc[(aug, "pearson"), "effect"] == pytest.approx(-0.6, abs=0.03)
        assert rows.loc[(aug, "pearson"), "effect_ci_high"] < 0
    identity = table[table["augmentation"] == "identity"]
    assert not identity["significant"].any()
    assert (identity["p_adjusted"] > 0.5).all() and (identity["effect"].abs() < 1e-3).all()
    html = (reported / "report.html").read_text()
    section = html[html.index('<section id="noise">') : html.index("</section>", html.index('<section id="noise">'))]
    differ = re.search(r"Differ from the noise floor in at least one metric[^<]*", section).group(0)
    same = re.search(r"Not distinguishable from the noise floor in any metric: ([^<]*)", section).group(1)
    assert all(aug in differ for aug in GROUP_A) and "identity" not in differ
    assert same == "identity (control)."
    assert "identity (control)" in html and "As a control should" in section


def test_augmentations_are_tested_against_the_identity_control_too(reported):
    """significance_vs_identity.csv: the same paired test with the identity control's per-image
    values as the reference (oracle: NumPy medians and scipy.stats.wilcoxon on the differences)."""
    from scipy.stats import wilcoxon

    table = pd.read_csv(reported / "tables/significance_vs_identity.csv")
    assert "identity_median" in table.columns and "noise_floor_median" not in table.columns
    assert list(dict.fromkeys(table["augmentation"])) == [a for a in AUGS if a != "identity"]
    values, _ = planted_values(np.random.default_rng(7))
    for row in table.itertuples(index=False):
        difference = values[row.augmentation][row.metric] - values["identity"][row.metric]
        assert row.effect == pytest.approx(np.median(difference), abs=1e-12)
        assert row.identity_median == pytest.approx(np.median(values["identity"][row.metric]), abs=1e-12)
        assert row.p_value == pytest.approx(wilcoxon(difference).pvalue, rel=1e-9)
        assert row.significant  # both groups sit far from identity, which is the noise floor
    html = (reported / "report.html").read_text()
    section = html[html.index('<section id="noise">') : html.index("</section>", html.index('<section id="noise">'))]
    assert "Against the identity (control)</h3>" in section
    assert re.search(
        r"Differ from the identity control \(the transformation itself moves the CAMs\): [^<]*" + ".*".join(AUGS[:4]),
        section,
    )


def test_noise_floor_summary_is_per_replica_and_over_replicas(reported):
    summary = pd.read_csv(reported / "tables/noise_floor_summary.csv")
    noise = pd.read_parquet(reported / "tables/noise_floor.parquet")
    assert list(summary.columns) == ["metric", "replica", "n_images", "median", "q25", "q75", "iqr"]
    assert summary.groupby("metric", sort=False)["replica"].apply(list).to_dict() == {
        m: [*REPLICAS, "all"] for m in METRICS
    }
    rows = summary.set_index(["metric", "replica"])
    for m in METRICS:
        for replica in REPLICAS:
            values = noise.loc[noise["replica"] == replica, m]
            assert rows.loc[(m, replica), "median"] == pytest.approx(values.median())
            assert rows.loc[(m, replica), "iqr"] == pytest.approx(values.quantile(0.75) - values.quantile(0.25))
        assert rows.loc[(m, "all"), "median"] == pytest.approx(noise.groupby("image_index")[m].mean().median())


def test_two_planted_groups_are_two_clusters(reported):
    clusters = pd.read_csv(reported / "tables/clusters.csv")
    assert set(clusters["scope"]) == {"all", *METRICS}
    for _, scope in clusters.groupby("scope"):
        cluster = scope.set_index("augmentation")["cluster"]
        assert cluster[GROUP_A[0]] == cluster[GROUP_A[1]]
        assert cluster[GROUP_B[0]] == cluster[GROUP_B[1]]
        assert cluster[GROUP_A[0]] != cluster[GROUP_B[0]]
    html = (reported / "report.html").read_text()
    profiles = html[html.index('<section id="profiles">') : html.index('<section id="segments">')]
    assert "fig-clusters" in profiles and "fig-between_augmentations" in profiles
    # Right after the strongest/weakest pair tables.
    assert (
        html.index('<section id="pairs">')
        < html.index('<section id="profiles">')
        < html.index('<section id="segments">')
    )


def test_between_augmentation_medians_equal_a_pandas_groupby(reported):
    between = pd.read_parquet(reported / "tables/between_augmentations.parquet")
    medians = pd.read_csv(reported / "tables/between_augmentations_median.csv")
    assert list(medians.columns) == ["augmentation_a", "augmentation_b", "n_seeds", "n_images", *METRICS]
    assert len(medians) == len(AUGS) * (len(AUGS) - 1) // 2
    pair = between[(between["augmentation_a"] == "affine") & (between["augmentation_b"] == "equalization")]
    row = medians[(medians["augmentation_a"] == "affine") & (medians["augmentation_b"] == "equalization")].iloc[0]
    for m in METRICS:
        by_hand = pair.groupby("image_index")[m].mean().median()
        assert row[m] == pytest.approx(by_hand, rel=1e-12)
        assert by_hand != pytest.approx(pair[m].median(), rel=1e-6)  # the seed mean comes first
    assert row["n_seeds"] == 2 and row["n_images"] == N
    matrix = between_matrix(medians, "pearson", ["baseline", *AUGS])
    assert (
        list(matrix.index) == list(AUGS)
        and matrix.loc["equalization", "affine"] == matrix.loc["affine", "equalization"]
    )
    assert np.isnan(np.diag(matrix.to_numpy())).all()


def test_between_heatmaps_write_every_pair_and_leave_the_diagonal_blank():
    rng = np.random.default_rng(0)
    augs = ["a", "b", "c"]
    between = pd.DataFrame(
        [
            {
                "augmentation_a": a,
                "augmentation_b": b,
                "seed": s,
                "image_index": i,
                "pearson": rng.uniform(),
                "mad": rng.uniform(),
            }
            for k, a in enumerate(augs)
            for b in augs[k + 1 :]
            for s in SEEDS
            for i in range(5)
        ]
    )
    medians = between_augmentation_medians(between, list(METRICS), augs)
    fig = between_heatmaps(medians, list(METRICS), augs)
    assert isinstance(fig, Figure)
    heat_axes = [ax for ax in fig.axes if ax.get_title()]
    assert [len(ax.texts) for ax in heat_axes] == [len(augs) * (len(augs) - 1)] * len(METRICS)


def test_sanity_verdict_passes_for_a_falling_curve(reported):
    html = (reported / "report.html").read_text()
    assert (
        "Grad-CAM passes the cascading randomisation check (median |Spearman| after randomising every layer: "
        "0.04, threshold 0.5)"
    ) in html
    assert "Grad-CAM passes the data randomisation check" in html
    verdicts = pd.read_csv(reported / "tables/sanity_verdict.csv")
    assert verdicts[["test", "passes"]].values.tolist() == [["cascading", True], ["data", True]]
    assert _headings(html)[-2:] == ["Is it more than noise?", "Sanity check"]


def test_sanity_verdict_fails_for_a_flat_curve(reported, tmp_path):
    run = tmp_path / "flat"
    shutil.copytree(reported, run)
    # Only cascading rows, as a study without the permuted-labels model writes.
    pd.DataFrame(sanity_rows([1.0, 0.95, 0.9, 0.92], data=None)).to_csv(run / "tables/sanity.csv", index=False)
    write_report(run)
    html = (run / "report.html").read_text()
    assert (
        "Grad-CAM fails the cascading randomisation check (median |Spearman| after randomising every layer: "
        "0.92, threshold 0.5)"
    ) in html
    assert "data randomisation check" not in html
    assert pd.read_csv(run / "tables/sanity_verdict.csv")["passes"].tolist() == [False]


def test_a_run_without_control_tables_still_has_a_report(reported, tmp_path):
    run = tmp_path / "no-controls"
    shutil.copytree(reported, run)
    for name in ("noise_floor.parquet", "between_augmentations.parquet", "sanity.csv"):
        (run / "tables" / name).unlink()
    manifest = json.loads((run / "manifest.json").read_text())
    manifest.pop("controls")
    (run / "manifest.json").write_text(json.dumps(manifest))
    write_report(run)
    html = (run / "report.html").read_text()
    headings = _headings(html)
    assert "Is it more than noise?" not in headings and "Sanity check" not in headings
    assert "Impact profiles" in headings  # needs aggregated.parquet only
    assert [int(n) for n in re.findall(r"<h2>(\d+)\. ", html)] == list(range(1, len(headings) + 1))
    assert len(re.findall(r"Controls were off for this run", html)) == 1
    assert "fig-between_augmentations" not in html and "fig-noise_effects" not in html
    # What the earlier report wrote from the control tables is gone, not left to contradict this one.
    for name in (
        "significance.csv",
        "noise_floor_summary.csv",
        "between_augmentations_median.csv",
        "sanity_verdict.csv",
    ):
        assert not (run / "tables" / name).exists()
    assert not (run / "figures/sanity.png").exists() and (run / "figures/clusters.png").exists()
    assert len(re.findall(r"<img src=\"data:image/png;base64,", html)) == len(list((run / "figures").glob("*.png")))


def test_a_control_table_that_lacks_test_images_is_one_clear_error(reported, tmp_path):
    run = tmp_path / "short-noise"
    shutil.copytree(reported, run)
    noise = pd.read_parquet(run / "tables/noise_floor.parquet")
    noise[noise["image_index"] != 3].to_parquet(run / "tables/noise_floor.parquet", index=False)
    with pytest.raises(ReportError, match=r"noise_floor\.parquet.*image 3"):
        write_report(run)
