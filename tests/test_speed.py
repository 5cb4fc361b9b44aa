"""Speed: the refusal of 1×1 CAM layers, the `cifar10-fast` preset and its model, the
GPU training recipe options (precision, channels_last, compile) and the training benchmark."""

import itertools

import numpy as np
import pytest
import torch
from test_study import _write_cifar

from augcam.config import load_config
from augcam.errors import ConfigError
from augcam.models import build_model
from augcam.pipeline import prepare
from augcam.training import TrainingData, TrainSettings, scheduled_lr, train_model


def test_a_1x1_target_layer_is_refused_with_the_field_the_size_and_the_reason(tmp_path):
    # EfficientNet-B0 downsamples 32×: its last stage is 1×1 on CIFAR's own 32×32 images.
    _write_cifar(tmp_path)
    config = load_config(
        "thesis-cifar10",
        overrides={
            "data.root": str(tmp_path),
            "data.image_size": 32,
            "data.train_size": 10,  # one image per class: fewer is refused before the layer is looked at
            "data.val_size": 2,
            "data.test_size": 2,
        },
    )
    with pytest.raises(
        ConfigError,
        match=r"model\.target_layer: 'features\.8' of efficientnet_b0 is 1×1 at "
        r"32×32 input, so every CAM would be constant",
    ) as caught:
        prepare(config)
    assert "data.image_size" in str(caught.value)
    # At 64×64 the same layer is 2×2 and accepted.
    config = load_config(
        "thesis-cifar10",
        overrides={
            "data.root": str(tmp_path),
            "data.image_size": 64,
            "data.train_size": 10,
            "data.val_size": 2,
            "data.test_size": 2,
        },
    )
    assert prepare(config).layer_size == (2, 2)


# --- the cifar10-fast preset and its model ------------------------------------------------------


def _fast_config(root, **overrides):
    return load_config(
        "cifar10-fast",
        overrides={
            "data.root": str(root),
            "data.train_size": 40,
            "data.val_size": 20,
            "data.test_size": 10,
            **overrides,
        },
    )


def test_cifar10_fast_preset_loads_cifar_files_and_its_layer_is_4x4(tmp_path):
    _write_cifar(tmp_path, per_batch=60)
    config = _fast_config(tmp_path)
    prepared = prepare(config)
    assert prepared.train_set.images.shape == (300, 3, 32, 32)
    assert prepared.input_size == (32, 32) and prepared.target_layer == "stage3"
    assert prepared.layer_size == (4, 4)
    # Baseline + 7 augmentations × 3 seeds + the 12 null models, then the two baseline replicas.
    assert len(prepared.runs) == 1 + 7 * 3 + 12 and len(prepared.controls) == 2
    assert [e.name for e in config.augmentations] == [
        "affine",
        "cutmix",
        "color_jitter",
        "elastic",
        "equalization",
        "gaussian_blur",
        "random_crop",
    ]
    t = config.training
    assert (t.optimizer, t.schedule, t.precision, t.channels_last, t.compile) == (
        "sgd_nesterov",
        "onecycle",
        "bf16",
        True,
        False,
    )
    assert [e.name for e in t.base_augmentations] == ["horizontal_flip", "translate"]


def test_cifar10_fast_trains_a_step_on_cpu_with_its_recipe(tmp_path):
    from augcam.pipeline.chain import train_one_model

    _write_cifar(tmp_path, per_batch=60)
    prepared = prepare(_fast_config(tmp_path, **{"training.epochs": 1, "training.batch_size": 32}))
    run = prepared.runs[1]  # affine, seed 0: original and augmented images in every batch
    outcome = train_one_model(prepared, run, torch.device("cpu"))
    assert outcome.status == "complete", outcome.meta
    row = outcome.history[0]
    assert row["images"] == 80 and np.isfinite(row["train_loss"]) and np.isfinite(row["val_loss"])
    # bf16 autocast ran, the weights stay float32 and contiguous.
    assert all(v.dtype in (torch.float32, torch.int64) for v in outcome.best_state.values())
    assert all(v.is_contiguous() for v in outcome.best_state.values())
    assert outcome.meta["key"]["training"]["recipe"]["precision"] == "bf16"
    assert [b["name"] for b in outcome.meta["key"]["training"]["base_augmentations"]] == [
        "horizontal_flip",
        "translate",
    ]


def test_cifar_resnet_is_covered_by_the_model_and_cam_parametrisations():
    import test_cams

    from augcam.models import MODELS

    assert MODELS["cifar_resnet"].head is not None
    assert ("cifar_resnet", 3, 64) in test_cams.FAST_CASES  # fast path = general path
    assert any(case[0] == "cifar_resnet" for case in test_cams.METHOD_CASES)  # = pytorch-grad-cam


# --- the GPU recipe options -----------------------------------------------------------------------


def _cifar_like(n=64):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, 32, 32, generator=g)
    labels = torch.arange(n) % 10
    return TrainingData(images, labels, images[:32], labels[:32], (0.5,) * 3, (0.25,) * 3)


def test_recipe_defaults_are_the_reference_loop_and_stay_out_of_model_ids():
    from augcam.config import RECIPE_FIELDS, TrainingConfig
    from augcam.pipeline.plan import model_key

    defaults = TrainSettings(1, 2, 1e-3, 0.0, 0, 1, 8)
    assert (
        defaults.optimizer,
        defaults.schedule,
        defaults.label_smoothing,
        defaults.precision,
        defaults.channels_last,
        defaults.compile,
    ) == ("adam", "constant", 0.0, "fp32", False, False)
    assert TrainingConfig().recipe() == {} and TrainingConfig().compile is False
    for field in RECIPE_FIELDS:  # the config's defaults are the loop's defaults
        assert TrainingConfig.model_fields[field].default == getattr(defaults, field)
    for preset in ("quick", "fashion-mnist", "thesis-cifar10"):
        config = load_config(preset)
        assert config.training.recipe() == {}
        assert "recipe" not in model_key(config, "fingerprint", None, None)["training"]
    assert TrainingConfig(compile=True).recipe() == {"compile": True}
    with pytest.raises(ConfigError, match=r"training\.precision"):
        load_config("quick", overrides={"training.precision": "fp16"})
    with pytest.raises(ConfigError, match=r"training\.optimizer"):
        load_config("quick", overrides={"training.optimizer": "lamb"})


def test_recipe_changes_the_model_id():
    from augcam.pipeline.plan import plan

    base = plan(load_config("quick"), "fingerprint")[0].model_id
    for field, value in (
        ("precision", "bf16"),
        ("channels_last", True),
        ("compile", True),
        ("optimizer", "sgd_nesterov"),
        ("label_smoothing", 0.1),
    ):
        assert plan(load_config("quick", overrides={f"training.{field}": value}), "fingerprint")[0].model_id != base


def test_onecycle_schedule_warms_up_then_decays_to_zero():
    settings = TrainSettings(1, 2, 0.4, 0.0, 0, 1, 8, schedule="onecycle", warmup_fraction=0.25)
    lrs = [scheduled_lr(settings, step, 100) for step in range(100)]
    assert lrs[0] == pytest.approx(0.04) and lrs[25] == pytest.approx(0.4) and max(lrs) == pytest.approx(0.4)
    assert all(a < b for a, b in itertools.pairwise(lrs[:26])) and all(a > b for a, b in itertools.pairwise(lrs[25:]))
    assert lrs[-1] == pytest.approx(0.4 / 75)


def test_onecycle_sgd_sets_the_learning_rate_of_every_step():
    seen = []
    data = _cifar_like(64)
    settings = TrainSettings(2, 32, 0.1, 5e-4, 0, 1, 64, optimizer="sgd_nesterov", schedule="onecycle")
    model = build_model("small_cnn", 3, 10, 0)
    original_step = torch.optim.SGD.step

    def recording_step(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        assert self.param_groups[0]["nesterov"] and self.param_groups[0]["momentum"] == 0.9
        return original_step(self, *args, **kwargs)

    torch.optim.SGD.step = recording_step
    try:
        train_model(model, data, settings, None, seed=0)
    finally:
        torch.optim.SGD.step = original_step
    assert seen == pytest.approx([scheduled_lr(settings, step, 4) for step in range(4)])


def test_bf16_trains_an_epoch_on_cpu_with_finite_loss_close_to_fp32():
    data = _cifar_like(64)
    results = {}
    for precision in ("fp32", "bf16"):
        model = build_model("cifar_resnet", 3, 10, 0)
        settings = TrainSettings(1, 32, 1e-3, 0.0, 0, 1, 64, precision=precision)
        results[precision] = train_model(model, data, settings, None, seed=0).history[0]
        assert all(p.dtype == torch.float32 for p in model.parameters())
    assert np.isfinite(results["bf16"]["train_loss"]) and np.isfinite(results["bf16"]["val_loss"])
    assert results["bf16"]["train_loss"] == pytest.approx(results["fp32"]["train_loss"], rel=0.05)
    assert results["bf16"]["train_loss"] != results["fp32"]["train_loss"]  # bf16 did run


def test_channels_last_training_gives_the_contiguous_predictions_within_rounding():
    """One SGD step in NHWC vs NCHW: the predictions differ by rounding, far less than a 2 % change
    of the learning rate moves them. (Over many steps rounding grows: BatchNorm makes the gradient of
    a bias feeding another BatchNorm ≈ 0, i.e. pure rounding noise, which Adam would scale to ±lr.)"""
    data = _cifar_like(64)
    probe = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    logits = {}
    for channels_last, lr in ((False, 0.05), (True, 0.05), (False, 0.051)):
        model = build_model("cifar_resnet", 3, 10, 0)
        settings = TrainSettings(1, 64, lr, 0.0, 0, 1, 64, optimizer="sgd_nesterov", channels_last=channels_last)
        train_model(model, data, settings, None, seed=0)
        if channels_last:
            assert model.stage1[0].weight.is_contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            logits[channels_last, lr] = model.eval()(probe)
    reference = logits[False, 0.05]
    error = float((logits[True, 0.05] - reference).abs().max())
    lr_effect = float((logits[False, 0.051] - reference).abs().max())
    assert error <= 1e-4 * float(reference.abs().max()) and error < lr_effect / 10, (error, lr_effect)


# --- the training benchmark runs on a CPU -------------------------------------------------------


def test_bench_training_prints_its_tables_on_cpu():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [
            sys.executable,
            str(root / "benchmarks/bench_training.py"),
            "--scale",
            "0.01",
            "--repeats",
            "1",
            "--augmentations",
            "identity,cutmix",
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PYTHONPATH": str(root / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| augmentation"))
    rows = [line.split("|")[1].strip() for line in lines[header + 2 : header + 5]]
    assert rows == ["none (baseline)", "identity", "cutmix"]
    assert float(lines[header + 2].split("|")[3]) == 1.0
    assert all(float(line.split("|")[3]) > 0 for line in lines[header + 3 : header + 5])
    assert "| equalization" in done.stdout and "v2 gaussian_blur per image" in done.stdout
