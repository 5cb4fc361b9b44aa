"""Mask-guided training inside the study: config, model ids, the training loop's
guided loss, ROC AUC, the localisation stage, the report section and the `mask-guided` preset."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import sklearn.metrics as skm
import torch
import torch.nn.functional as F

from augcam.config import load_config
from augcam.data import DATASETS, ImageSet
from augcam.data.synthetic import crosses_splits
from augcam.errors import ConfigError
from augcam.metrics.localisation import localisation
from augcam.metrics.performance import roc_auc
from augcam.models import build_model
from augcam.training import (
    GuidedTraining,
    TrainingData,
    TrainSettings,
    guided_generator,
    load_train_state,
    save_train_state,
    train_model,
)
from augcam.training.guided import GUIDED_LOSSES

NO_CONTROLS = {"identity": False, "baseline_replicas": 0, "sanity_images": 0}


def guided_study(**extra) -> dict:
    study = {
        "name": "mg",
        "data": {"dataset": "crosses", "train_size": 40, "val_size": 20, "test_size": 30},
        "guided": ["actdiff", {"loss": "classify_masked", "ce_weight": 0}],
        "seeds": [0],
        "training": {"epochs": 1},
        "controls": dict(NO_CONTROLS),
    }
    study.update(extra)
    return study


# --- config ------------------------------------------------------------------------------------


def test_unknown_guided_loss_lists_the_valid_ones():
    with pytest.raises(
        ConfigError,
        match=r"guided\.loss: unknown guided loss 'actdif'; did you mean 'actdiff'\?"
        r".*valid: actdiff, classify_masked, gradmask, rrr",
    ):
        load_config(guided_study(guided=["actdif"]))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"guided": []}, r"augmentations: List should have at least 1 item"),
        ({"guided": ["rrr", "rrr"]}, r"label 'rrr' is already used"),
        ({"guided": [{"loss": "rrr", "label": "baseline"}]}, r"label 'baseline' is already used"),
        ({"guided": ["rrr"], "augmentations": [{"name": "affine", "label": "rrr"}]}, r"label 'rrr' is already used"),
        ({"guided": [{"loss": "rrr", "weight": 0}]}, r"guided\[0\]\.weight: Input should be greater than 0"),
        (
            {"guided": [{"loss": "rrr", "ce_weight": -1}]},
            r"guided\[0\]\.ce_weight: Input should be greater than or equal",
        ),
        ({"guided": [{"loss": "rrr", "wieght": 2}]}, r"guided\[0\]\.wieght: unknown key; did you mean 'weight'\?"),
    ],
)
def test_bad_guided_entries_are_config_errors(change, message):
    with pytest.raises(ConfigError, match=message):
        load_config(guided_study(**change))


def test_guided_needs_masks_native_size_and_a_real_feature_layer():
    from augcam.pipeline import prepare

    @DATASETS.register("no-masks-for-test")
    def _no_masks(root, download):
        parts = crosses_splits(40, 20, 30)
        strip = lambda s: ImageSet(s.images, s.labels, s.classes)  # noqa: E731
        return strip(parts.train), strip(parts.test)

    try:
        with pytest.raises(
            ConfigError,
            match="guided: mask-guided losses need ROI masks, but data.dataset 'no-masks-for-test' has none",
        ):
            prepare(guided_study(data={"dataset": "no-masks-for-test", "val_fraction": 0.25}))
    finally:
        del DATASETS["no-masks-for-test"]
    with pytest.raises(ConfigError, match="data.image_size 32 resizes the inputs but not the masks"):
        prepare(guided_study(data={"dataset": "crosses", "image_size": 32}))
    with pytest.raises(ConfigError, match=r"guided\[actdiff\]\.feature_layer: 'head' is not a module of small_cnn"):
        prepare(guided_study(guided=[{"loss": "actdiff", "feature_layer": "head"}]))


def test_model_ids_baseline_unchanged_and_guided_settings_hashed():
    from augcam.pipeline import prepare

    with_guided = prepare(guided_study(augmentations=["affine"]))
    without = prepare(guided_study(augmentations=["affine"], guided=[]))
    # adding guided entries changes neither the baseline's nor the augmented models' ids
    assert [r.model_id for r in without.runs] == [r.model_id for r in with_guided.runs[:2]]
    assert "guided" not in load_config(guided_study(augmentations=["affine"], guided=[])).resolved()
    labels = [run.label for run in with_guided.runs]
    assert labels == ["baseline", "affine seed 0", "actdiff seed 0", "classify_masked seed 0"]
    heavier = prepare(guided_study(guided=[{"loss": "actdiff", "weight": 2.0}]))
    assert heavier.runs[1].model_id != with_guided.runs[2].model_id
    seeds = prepare(guided_study(guided=["actdiff"], seeds=[0, 1]))
    # seed s shifts the data order by s: seed 0 shares the baseline's init and order exactly
    assert [(r.init_seed, r.ordering_seed) for r in seeds.runs] == [(0, 0), (0, 0), (0, 1)]
    assert seeds.runs[1].model_id != seeds.runs[2].model_id


# --- the training loop --------------------------------------------------------------------------


def crosses_data(n=32):
    parts = crosses_splits(n, 16, 8)
    images = parts.train.images.float() / 255
    return TrainingData(
        images,
        parts.train.labels,
        parts.val.images.float() / 255,
        parts.val.labels,
        (0.2,),
        (0.3,),
        train_masks=parts.train.masks,
    )


ONE_BATCH = TrainSettings(
    epochs=1, batch_size=64, lr=1e-2, weight_decay=0.0, ordering_seed=0, copies=0, eval_batch_size=64
)


@pytest.mark.parametrize(
    "loss, weight, ce_weight",
    [("actdiff", 0.5, 1.0), ("rrr", 10.0, 1.0), ("gradmask", 2.0, 1.0), ("classify_masked", 1.0, 0.0)],
)
def test_one_guided_step_is_the_weighted_sum_of_the_losses(loss, weight, ce_weight):
    """One epoch of one batch = one Adam step on ce_weight·CE + weight·guided loss, computed here
    from the registry entry directly (the batch's order and generator rebuilt by hand)."""
    from augcam.training import epoch_order

    data = crosses_data()
    trained = build_model("small_cnn", 1, 2, init_seed=0)
    reference = copy.deepcopy(trained)
    result = train_model(
        trained, data, ONE_BATCH, None, seed=5, guided=GuidedTraining(loss, weight, ce_weight, "classifier")
    )
    torch.manual_seed(0)  # the reference's model uses no global randomness; set it anyway
    order = epoch_order(len(data.train_images), 0, 0, 0)
    x = (data.train_images[order] - 0.2) / 0.3
    y, masks = data.train_labels[order], data.train_masks[order]
    reference.train()
    optimizer = torch.optim.Adam(reference.parameters(), lr=1e-2, weight_decay=0.0)
    # the plain forward pass first (BatchNorm's running statistics see the passes in order); with
    # ce_weight 0 the model never sees the plain inputs in training mode
    plain = reference(x) if ce_weight else None
    total = weight * GUIDED_LOSSES[loss](
        reference, x, y, masks, generator=guided_generator(5, 0, 0), feature_layer="classifier"
    )
    if ce_weight:
        total = ce_weight * F.cross_entropy(plain, y) + total
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    for name, value in reference.state_dict().items():
        assert torch.allclose(result.best_state[name].float(), value.float(), atol=1e-6), name


def test_guided_loss_changes_training_and_needs_masks():
    data = crosses_data()
    plain = train_model(build_model("small_cnn", 1, 2, 0), data, ONE_BATCH, None, seed=0)
    guided = train_model(
        build_model("small_cnn", 1, 2, 0), data, ONE_BATCH, None, seed=0, guided=GuidedTraining("rrr", 10.0)
    )
    assert not torch.equal(plain.best_state["classifier.weight"], guided.best_state["classifier.weight"])
    without_masks = TrainingData(data.train_images, data.train_labels, data.val_images, data.val_labels, (0.2,), (0.3,))
    with pytest.raises(ValueError, match="guided loss 'rrr' needs the training masks"):
        train_model(
            build_model("small_cnn", 1, 2, 0), without_masks, ONE_BATCH, None, seed=0, guided=GuidedTraining("rrr", 1.0)
        )


def test_guided_training_resumes_bit_identically(tmp_path):
    data = crosses_data()
    settings = TrainSettings(
        epochs=2, batch_size=8, lr=1e-3, weight_decay=0.0, ordering_seed=1, copies=0, eval_batch_size=64
    )
    guided = GuidedTraining("actdiff", 1.0)
    full = train_model(build_model("small_cnn", 1, 2, 0), data, settings, None, seed=3, guided=guided)
    states = []
    train_model(
        build_model("small_cnn", 1, 2, 0), data, settings, None, seed=3, guided=guided, on_checkpoint=states.append
    )
    save_train_state(tmp_path / "c.safetensors", states[0], {"m": 1})
    resumed = train_model(
        build_model("small_cnn", 1, 2, 0),
        data,
        settings,
        None,
        seed=3,
        guided=guided,
        resume=load_train_state(tmp_path / "c.safetensors", {"m": 1}),
    )
    for name, value in full.best_state.items():
        assert torch.equal(value, resumed.best_state[name]), name


# --- ROC AUC vs scikit-learn -------------------------------------------------------------------------


def test_roc_auc_matches_scikit_learn():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (200,), generator=g)
    logits = torch.randn(200, 2, generator=g).round(decimals=1)  # rounding makes ties
    p = torch.softmax(logits.double(), dim=1)
    assert roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y.numpy(), p[:, 1].numpy()), abs=1e-12)
    assert roc_auc(y, torch.stack([1 - (y == 1).double(), (y == 1).double()], 1)) == 1.0
    assert roc_auc(y, torch.stack([(y == 1).double(), 1 - (y == 1).double()], 1)) == 0.0
    y4 = torch.randint(0, 4, (300,), generator=g)
    p4 = torch.softmax(torch.randn(300, 4, generator=g).double(), dim=1)
    expected = skm.roc_auc_score(y4.numpy(), p4.numpy(), multi_class="ovr", average="macro", labels=[0, 1, 2, 3])
    assert roc_auc(y4, p4) == pytest.approx(expected, abs=1e-12)
    assert np.isnan(roc_auc(torch.zeros(5, dtype=torch.long), torch.rand(5, 2)))  # one class only: undefined
    with pytest.raises(ValueError, match="scores must be"):
        roc_auc(y, p[:, :1])


# --- end to end -----------------------------------------------------------------------------------


def test_tiny_mask_guided_study_end_to_end(tmp_path):
    from augcam.atomic import read_tensors
    from augcam.pipeline import run_study
    from augcam.rundir import RunDir

    study = guided_study(training={"epochs": 2, "batch_size": 16}, controls={**NO_CONTROLS, "baseline_replicas": 1})
    result = run_study(study, tmp_path / "out", device="cpu")
    out = tmp_path / "out"
    perf = result.performance
    assert list(perf["augmentation"]) == ["baseline", "actdiff", "classify_masked"]
    test = crosses_splits().test
    labels = test.labels[:30]  # test_size 30 of 500 is a stratified subset: check by the stored indices instead
    run_dir = RunDir(out)
    loc = pd.read_parquet(out / "tables/localisation.parquet")
    assert len(loc) == 3 * 30 and set(loc["augmentation"]) == {"baseline", "actdiff", "classify_masked"}
    for row in perf.itertuples():
        cams = read_tensors(run_dir.cams_file(row.model_id))
        index = cams["image_index"]
        labels = test.labels[index]
        probabilities = torch.softmax(cams["logits"].double(), dim=1)
        assert row.roc_auc == pytest.approx(skm.roc_auc_score(labels.numpy(), probabilities[:, 1].numpy()), abs=1e-12)
        assert row.test_accuracy == pytest.approx(float((cams["predictions"] == labels).double().mean()))
        # the stage's numbers are the localisation metrics of the stored CAMs against the test masks
        from augcam.cams import upsample

        expected = localisation(upsample(cams["raw"], (28, 28)), test.masks[index])
        mine = loc[loc["model_id"] == row.model_id].set_index("image_index").loc[index.numpy()]
        for name, values in expected.items():
            np.testing.assert_allclose(mine[name].to_numpy(), values.numpy(), equal_nan=True)
    assert set(result.metrics["augmentation"]) == {"actdiff", "classify_masked"}
    # the report's section and its CSV
    html = (out / "report.html").read_text()
    assert "Mask-guided training: generalisation vs localisation" in html and "ROC AUC" in html
    table = pd.read_csv(out / "tables/mask_guided.csv")
    assert list(table["augmentation"]) == ["baseline", "actdiff", "classify_masked"]
    assert table.loc[0, "roc_auc_mean"] == pytest.approx(perf.loc[0, "roc_auc"])
    assert np.isnan(table.loc[0, "pearson_vs_baseline"]) and not np.isnan(table.loc[1, "pearson_vs_baseline"])
    assert table.loc[1, "iou_mean"] == pytest.approx(loc.loc[loc["augmentation"] == "actdiff", "iou"].mean())
    assert (out / "tables/mask_guided_correlation.csv").exists()


def test_mask_guided_preset_is_the_protocol():
    config = load_config("mask-guided")
    assert config.data.dataset == "crosses" and config.model.name == "small_cnn"
    assert [g.loss for g in config.guided] == ["actdiff", "gradmask", "rrr", "classify_masked"]
    assert config.seeds == [0, 1, 2] and config.augmentations == []
    from augcam.pipeline import prepare

    prepared = prepare(config)
    assert (len(prepared.split.train), len(prepared.split.val), len(prepared.split.test)) == (500, 200, 500)
    assert len(prepared.runs) == 1 + 4 * 3


def test_generalisation_vs_localisation_table_by_hand():
    from scipy import stats

    from augcam.analysis.generalisation import auc_localisation_correlation, generalisation_vs_localisation

    performance = pd.DataFrame(
        {
            "model_id": ["b", "a0", "a1", "m0", "m1", "x"],
            "augmentation": ["baseline", "act", "act", "mask", "mask", "act"],
            "seed": [None, 0, 1, 0, 1, 2],
            "status": ["complete"] * 5 + ["diverged"],
            "test_accuracy": [0.1, 0.9, 0.8, 1.0, 0.95, np.nan],
            "roc_auc": [0.05, 0.97, 0.9, 1.0, 0.99, np.nan],
        }
    )
    rng = np.random.default_rng(0)
    localisation = pd.DataFrame(
        {
            "model_id": np.repeat(["b", "a0", "a1", "m0", "m1"], 4),
            "image_index": np.tile(np.arange(4), 5),
            "iou": rng.random(20),
        }
    )
    localisation.loc[3, "iou"] = np.nan  # undefined for one image: left out of the model's mean
    aggregated = pd.DataFrame(
        {
            "augmentation": ["act"] * 3 + ["mask"] * 3,
            "image_index": [0, 1, 2] * 2,
            "label": 0,
            "baseline_pred": 0,
            "n_models": 2,
            "pearson": [0.1, 0.5, 0.2, 0.9, 0.7, 0.8],
        }
    )
    table = generalisation_vs_localisation(performance, localisation, aggregated)
    assert list(table["augmentation"]) == ["baseline", "act", "mask"] and list(table["models"]) == [1, 2, 2]
    per_model = localisation.groupby("model_id")["iou"].mean()
    assert table.loc[0, "iou_mean"] == pytest.approx(np.nanmean(localisation["iou"][:4]))
    assert table.loc[1, "iou_mean"] == pytest.approx((per_model["a0"] + per_model["a1"]) / 2)
    assert table.loc[1, "iou_std"] == pytest.approx(np.std([per_model["a0"], per_model["a1"]], ddof=1))
    assert table.loc[2, "roc_auc_mean"] == pytest.approx(0.995) and np.isnan(table.loc[0, "roc_auc_std"])
    assert np.isnan(table.loc[0, "pearson_vs_baseline"]) and table.loc[1, "pearson_vs_baseline"] == pytest.approx(0.2)
    correlation = auc_localisation_correlation(performance, localisation)
    ids = ["b", "a0", "a1", "m0", "m1"]
    expected = stats.spearmanr([0.05, 0.97, 0.9, 1.0, 0.99], [per_model[i] for i in ids]).statistic
    assert correlation.loc[0, "models"] == 5 and correlation.loc[0, "spearman_with_auc"] == pytest.approx(expected)
