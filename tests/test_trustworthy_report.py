"""The report's trustworthiness sections (the model-level test against the null models, the
per-image tables, impact profiles, augmentation vs augmentation, sanity check) on hand-made run
directories whose answers are planted: two groups of augmentations far from the null models, a
null augmentation drawn like the null models, two groups with different profiles, a falling and a
flat sanity curve, a design that cannot reach p < 0.05, and runs without null models or without
any control table."""

import json
import re
import shutil
from html import unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from matplotlib.figure import Figure
from safetensors.torch import save_file
from typer.testing import CliRunner

from augcam.analysis import ReportError, between_augmentation_medians, between_heatmaps, between_matrix, write_report
from augcam.analysis.design import min_p_value, null_models_needed
from augcam.analysis.model_tests import MODEL_TEST_COLUMNS, clustered_t_test, permutation_test
from augcam.analysis.statistics import SIGNIFICANCE_COLUMNS
from augcam.cli import app
from augcam.config import load_config

N = 50  # test images
METRICS = ("mad", "pearson")  # few: every metric adds figures to draw
SEEDS = (0, 1, 2)
NULL_SEEDS = (0, 1, 2, 3, 4, 5)  # the study's seeds first, then the next integers
GROUP_A = ("affine", "random_crop")  # planted far from the null models, one profile
GROUP_B = ("color_jitter", "equalization")  # planted far from them too, another profile
NULL_AUG = "gaussian_blur"  # planted as one more draw of the null models
AUGS = (*GROUP_A, *GROUP_B, NULL_AUG, "identity")
REPLICAS = ("ordering+1", "init+1")
LAYERS = ("(trained model)", "fc", "conv2", "conv1")


def planted_values(rng, null_models: int = len(NULL_SEEDS)) -> tuple[dict, dict]:
    """({augmentation: [{metric: per-image values} per model]}, {replica: {metric: values}}).

    The null models (identity) sit near Pearson 0.9 / MAD 0.1, each shifted by its own model-level
    offset (how retrained models differ) plus per-image noise; the null augmentation is drawn the
    same way. Group A sits at Pearson 0.3 / MAD 0.6 with one per-image pattern, group B at Pearson
    0.7 / MAD 0.25 with another. The replicas sit near the null models."""
    replicas = {r: {"pearson": 0.9 + rng.normal(0, 0.02, N), "mad": 0.1 + rng.normal(0, 0.01, N)} for r in REPLICAS}
    pattern_a, pattern_b = rng.normal(0, 1, N), rng.normal(0, 1, N)

    def null_model() -> dict:
        offset = rng.normal(0, 0.01)
        return {
            "pearson": 0.9 + offset + rng.normal(0, 0.005, N),
            "mad": 0.1 - offset / 2 + rng.normal(0, 0.0025, N),
        }

    values = {}
    for aug in GROUP_A:
        values[aug] = [
            {
                "pearson": 0.3 + 0.05 * pattern_a + rng.normal(0, 0.005, N),
                "mad": 0.6 + 0.05 * pattern_a + rng.normal(0, 0.005, N),
            }
            for _ in SEEDS
        ]
    for aug in GROUP_B:
        values[aug] = [
            {
                "pearson": 0.7 + 0.05 * pattern_b + rng.normal(0, 0.005, N),
                "mad": 0.25 - 0.05 * pattern_b + rng.normal(0, 0.005, N),
            }
            for _ in SEEDS
        ]
    values[NULL_AUG] = [null_model() for _ in SEEDS]
    values["identity"] = [null_model() for _ in range(null_models)]
    return values, replicas


def seed_mean(models: list[dict], metric: str) -> np.ndarray:
    return np.mean([model[metric] for model in models], axis=0)


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


def make_run(out: Path, null_models: int = len(NULL_SEEDS), replicas: bool = True) -> Path:
    """A finished run directory: baseline + the augmentations above × 3 seeds and `null_models`
    identity models (the null models) on N test images, with every control table (the baseline
    replicas' only with `replicas`). The dataset is not on the machine: the CAM grids are drawn
    without images."""
    rng = np.random.default_rng(7)
    config = load_config(
        {
            "name": "planted",
            "data": {"dataset": "image-folder", "root": str(out / "no-images")},
            "model": {"name": "small_cnn"},
            "augmentations": [a for a in AUGS if a != "identity"],
            "seeds": list(SEEDS),
            "controls": {
                "identity": null_models > 0,
                "null_models": null_models,
                "baseline_replicas": 2 if replicas else 0,
                "sanity_images": 20,
                "data_randomization": True,
            },
        }
    )
    out.mkdir(parents=True)
    (out / "study.yaml").write_text(yaml.safe_dump(config.resolved(), sort_keys=False))
    values, replica_values = planted_values(rng, null_models)
    labels = np.arange(N) % 3
    seeds_of = {aug: NULL_SEEDS[: len(values[aug])] if aug == "identity" else SEEDS for aug in AUGS}
    models = [("baseline-000000000000", "baseline", None, None)] + [
        (f"{aug}-s{seed}-{k:012d}", aug, seed, values[aug][j])
        for k, (aug, j, seed) in enumerate((a, j, s) for a in AUGS for j, s in enumerate(seeds_of[a]))
    ]
    (out / "cams").mkdir()
    for model_id, _, _, _ in models:
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
            for mid, aug, seed, _ in models
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
                    **{m: planted[m] for m in METRICS},
                }
            )
            for mid, aug, seed, planted in models[1:]
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
                    **{m: replica_values[r][m] for m in METRICS},
                }
            )
            for r in REPLICAS
        ],
        ignore_index=True,
    ).to_parquet(tables / "noise_floor.parquet", index=False)
    if not replicas:
        (tables / "noise_floor.parquet").unlink()
    augs_present = [a for a in AUGS if values[a]]
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
        for i, a in enumerate(augs_present)
        for b in augs_present[i + 1 :]
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
                "controls": config.controls.model_dump(),
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


def _section(html: str, sid: str = "noise") -> str:
    start = html.index(f'<section id="{sid}">')
    return html[start : html.index("</section>", start)]


def _text(html: str) -> str:
    """The visible text of an HTML fragment, whitespace collapsed."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def test_model_level_test_finds_the_planted_augmentations_and_not_the_null_one(reported):
    """model_tests.csv: every augmentation's 3 models against the 6 null models; the planted groups
    lie entirely further from the baseline than the null models (p = the one-sided floor 1/84,
    BH-adjusted below 0.05), the null augmentation does not differ. Oracles: NumPy means of the planted values and the
    permutation and clustered t-test p-values recomputed from them."""
    table = pd.read_csv(reported / "tables/model_tests.csv", keep_default_na=False, na_values=[""])
    assert list(table.columns) == MODEL_TEST_COLUMNS
    assert list(dict.fromkeys(table["augmentation"])) == [a for a in AUGS if a != "identity"]
    assert (table["n_models"] == len(SEEDS)).all() and (table["n_null"] == len(NULL_SEEDS)).all()
    values, _ = planted_values(np.random.default_rng(7))
    rows = table.set_index(["augmentation", "metric"])
    for aug in (*GROUP_A, *GROUP_B, NULL_AUG):
        for m in METRICS:
            mine = np.array([model[m].mean() for model in values[aug]])
            null = np.array([model[m].mean() for model in values["identity"]])
            row = rows.loc[(aug, m)]
            assert row["effect"] == pytest.approx(mine.mean() - null.mean(), abs=1e-12)
            further = "less" if m == "pearson" else "greater"  # lower similarity, higher distance
            p_permutation = permutation_test(mine, null, alternative=further)
            p_clustered = clustered_t_test(mine, null, alternative=further)["p_value"]
            assert row["p_permutation"] == pytest.approx(p_permutation, rel=1e-12)
            assert row["p_clustered"] == pytest.approx(p_clustered, rel=1e-9)
            assert row["p_value"] == pytest.approx(max(p_permutation, p_clustered), rel=1e-9)
            assert row["min_p"] == pytest.approx(min_p_value(3, 6))
    assert min_p_value(3, 6) == pytest.approx(1 / 84)  # the one most extreme split of C(9, 3) = 84
    for aug in (*GROUP_A, *GROUP_B):
        assert rows.loc[(aug, "pearson"), "p_value"] == pytest.approx(1 / 84)
        assert rows.loc[[(aug, m) for m in METRICS], "significant"].all()
        assert rows.loc[(aug, "pearson"), "direction"] == rows.loc[(aug, "mad"), "direction"] == "further"
    assert rows.loc[(GROUP_A[0], "pearson"), "effect"] == pytest.approx(-0.6, abs=0.03)
    assert rows.loc[(GROUP_A[0], "pearson"), "effect_ci_high"] < 0
    assert not rows.loc[[(NULL_AUG, m) for m in METRICS], "significant"].any()

    html = (reported / "report.html").read_text()
    section = _text(_section(html))
    for aug in (*GROUP_A, *GROUP_B):
        assert re.search(
            rf"{aug} differs from retraining noise in MAD \(effect \+[\d.]+ \[95% CI \+[\d.]+, \+[\d.]+\], "
            r"[\d.]+ null-model SDs, further from the baseline than the null models, p_adj 0\.0\d+\) and Pearson",
            section,
        ), aug
    assert f"{NULL_AUG} is not distinguishable from retraining noise with 3 models against 6 null models." in section
    assert f"{NULL_AUG} differs" not in section and "identity (control) differs" not in section
    assert (
        "Design limit: 3 models per augmentation against 6 null models: the smallest p-value this design "
        "can reach is 0.012 (one-sided permutation test: further from the baseline than the null models)" in section
    )
    assert "Warning" not in section
    # 5 augmentations: one alone with both rows at the floor 1/84 would be adjusted to 5/84 ≈ 0.06.
    assert (
        "With 5 augmentations, Benjamini–Hochberg over the table lets an augmentation through only when others "
        f"differ too (it needs min_p × 5 < 0.05): train at least {null_models_needed(3, augmentations=5)} null "
        "models (controls.null_models) to find one on its own." in section
    )
    # "significant" belongs to the model-level test only: no other sentence of the report uses it.
    assert not re.search(r"\bsignificant", _text(html).replace("tables/significance", ""), re.I)
    assert "fig-model_summaries" in html and (reported / "figures/model_summaries.png").exists()


def test_per_image_tables_are_descriptive_and_the_replicas_labelled(reported):
    """significance.csv and significance_vs_identity.csv stay, under a heading that calls them
    descriptive; the replicas' table is labelled as the baseline's dependence on init and order.
    significance_vs_identity's numbers against NumPy medians and scipy.stats.wilcoxon."""
    from scipy.stats import wilcoxon

    table = pd.read_csv(reported / "tables/significance.csv")
    assert list(table.columns) == SIGNIFICANCE_COLUMNS
    assert list(dict.fromkeys(table["augmentation"])) == list(AUGS)  # study order
    rows = table.set_index(["augmentation", "metric"])
    for aug in GROUP_A:
        assert bool(rows.loc[(aug, "pearson"), "significant"]) and bool(rows.loc[(aug, "mad"), "significant"])
        assert rows.loc[(aug, "pearson"), "effect"] == pytest.approx(-0.6, abs=0.03)

    vs_identity = pd.read_csv(reported / "tables/significance_vs_identity.csv")
    assert "identity_median" in vs_identity.columns and "noise_floor_median" not in vs_identity.columns
    assert list(dict.fromkeys(vs_identity["augmentation"])) == [a for a in AUGS if a != "identity"]
    values, _ = planted_values(np.random.default_rng(7))
    for row in vs_identity.itertuples(index=False):
        reference = seed_mean(values["identity"], row.metric)
        difference = seed_mean(values[row.augmentation], row.metric) - reference
        assert row.effect == pytest.approx(np.median(difference), abs=1e-12)
        assert row.identity_median == pytest.approx(np.median(reference), abs=1e-12)
        assert row.p_value == pytest.approx(wilcoxon(difference).pvalue, rel=1e-9)
    # What the issue is about: per image, the null augmentation's three models differ from the six
    # null models' average — which says nothing about the augmentation.
    assert vs_identity.set_index(["augmentation", "metric"]).loc[(NULL_AUG, "pearson"), "significant"]

    section = _section((reported / "report.html").read_text())
    text = _text(section)
    assert "Which images changed: per-image tests (descriptive)</h3>" in section
    assert "They are not a verdict about the augmentation" in text
    assert "How much the baseline itself depends on its init seed and data order</h3>" in section
    assert "It is not the null for the augmentations" in text
    # The verdicts come first, the description after.
    assert text.index("differs from retraining noise") < text.index("Which images changed")
    assert re.search(
        r"Per image, these models' CAMs moved away from the identity control's \(†\): [^.]*" + NULL_AUG, text
    )


def test_a_design_that_cannot_reach_significance_says_so(tmp_path):
    """3 models against 3 null models: the smallest one-sided p is 1/20 = 0.05, so nothing can be
    found, the report warns and says how many null models or seeds would do, and no augmentation,
    however far, is said to differ."""
    run = make_run(tmp_path / "three", null_models=3)
    write_report(run)
    table = pd.read_csv(run / "tables/model_tests.csv")
    assert (table["n_null"] == 3).all() and np.allclose(table["min_p"], 0.05, rtol=1e-12)
    assert not table["significant"].any()
    assert np.allclose(table.loc[table["augmentation"].isin(GROUP_A), "p_value"], 0.05, rtol=1e-12)
    section = _text(_section((run / "report.html").read_text()))
    assert (
        "Warning: Design limit: 3 models per augmentation against 3 null models: the smallest p-value this "
        "design can reach is 0.05 (one-sided permutation test: further from the baseline than the null models), so "
        "it cannot reach p < 0.05 by design: train at least 4 null models (controls.null_models) or 4 seeds; "
        f"{null_models_needed(3, augmentations=5)} null "
        "models find one augmentation on its own among 5."
    ) in section
    assert not re.search(r"\w differs from retraining noise in", section)
    for aug in AUGS[:-1]:
        assert f"{aug} is not distinguishable from retraining noise with 3 models against 3 null models." in section


def test_a_run_without_null_models_says_so(tmp_path):
    run = make_run(tmp_path / "no-null", null_models=0)
    write_report(run)
    html = (run / "report.html").read_text()
    assert "Is it more than noise?" in _headings(html)  # the replicas are still there
    section = _text(_section(html))
    assert "This run has no null models (controls.identity, controls.null_models)" in section
    assert "0 null models: no model-level test is possible; train at least 4 null models" in section
    assert not re.search(r"\w differs from retraining noise in", section) and "not distinguishable" not in section
    assert not (run / "tables/model_tests.csv").exists()
    assert not (run / "tables/significance_vs_identity.csv").exists()
    assert "fig-model_summaries" not in html and "<td>controls</td><td>no null models, 2 baseline replica(s)" in html


def test_validate_prints_the_design_limits(tmp_path):
    """`augcam validate` (no data needed with --no-data) states the smallest reachable p-value, and
    warns when the design cannot reach p < 0.05, with the counts that would."""
    study = tmp_path / "study.yaml"
    study.write_text(
        yaml.safe_dump(
            {
                "name": "limits",
                "data": {"dataset": "image-folder", "root": str(tmp_path / "absent")},
                "model": {"name": "small_cnn"},
                "augmentations": ["affine"],
                "seeds": [0, 1, 2],
            }
        )
    )
    runner = CliRunner()
    done = runner.invoke(app, ["validate", str(study), "--no-data"])
    assert done.exit_code == 0, done.output
    assert "design limits: 3 models per augmentation against 12 null models: the smallest p-value" in done.output
    assert "0.0022" in done.output and "warning" not in done.output
    done = runner.invoke(
        app,
        [
            "validate",
            str(study),
            "--no-data",
            "--set",
            "controls.null_models=6",
            "--set",
            "augmentations=[affine,cutmix,elastic,equalization,gaussian_blur]",
        ],
    )
    assert done.exit_code == 0, done.output
    assert re.search(
        r"^warning: with 5 augmentations, an augmentation is found different from retraining noise only when others "
        r"are too \(Benjamini–Hochberg over the table\); train at least 7 null models \(controls\.null_models\) to "
        r"find one on its own$",
        done.output,
        re.M,
    )
    done = runner.invoke(app, ["validate", str(study), "--no-data", "--set", "controls.null_models=3"])
    assert done.exit_code == 0, done.output
    assert "against 3 null models: the smallest p-value this design can reach is 0.05" in done.output
    assert re.search(
        r"^warning: this study cannot find any augmentation different from retraining noise \(p < 0\.05\) by "
        r"design; train at least 4 null models \(controls\.null_models\) or 4 seeds$",
        done.output,
        re.M,
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
    assert row["n_seeds"] == len(SEEDS) and row["n_images"] == N
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
    for name in ("metrics.parquet", "aggregated.parquet", "performance.parquet"):  # and no null models
        table = pd.read_parquet(run / "tables" / name)
        table[table["augmentation"] != "identity"].to_parquet(run / "tables" / name, index=False)
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
    assert "no null models (controls.identity: false), so no “Is it more than noise?” section" in html
    assert "fig-between_augmentations" not in html and "fig-noise_effects" not in html
    assert "fig-model_summaries" not in html and not (run / "figures/model_summaries.png").exists()
    # What the earlier report wrote from the control tables is gone, not left to contradict this one.
    for name in (
        "model_tests.csv",
        "significance.csv",
        "significance_vs_identity.csv",
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
