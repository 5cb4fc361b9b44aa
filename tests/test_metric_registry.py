"""The metric and CAM-method registries: every entry is complete, and an entry registered from
Python reaches a study's tables, figures and report with no edit anywhere else."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

import augcam
from augcam.analysis.names import display_name, higher_is_better, method_name
from augcam.cams import CAM_METHODS, CAMMethod, register_cam_method
from augcam.metrics import METRICS, register_map_metric
from augcam.metrics.faithfulness import FILLS, removal_fill
from augcam.metrics.registry import KINDS, column_display_name, metrics_of_kind, register_metric


def _inputs(kind: str, n: int = 5) -> tuple:
    generator = torch.Generator().manual_seed(0)
    if kind == "map_pair":
        return torch.rand(n, 49, generator=generator, dtype=torch.float64), torch.rand(
            n, 49, generator=generator, dtype=torch.float64
        )
    if kind == "single_map":
        return (torch.rand(n, 49, generator=generator, dtype=torch.float64),)
    if kind == "masks":
        return torch.rand(n, 7, 7, generator=generator), torch.rand(n, 7, 7, generator=generator) > 0.6
    logits = torch.randn(2, n, 10, generator=generator, dtype=torch.float64)
    return torch.softmax(logits[0], dim=1), torch.softmax(logits[1], dim=1)


@pytest.mark.parametrize("name", list(METRICS))
def test_every_registered_metric_is_complete_and_gives_one_value_per_image(name):
    spec = METRICS[name]
    assert spec.name == name
    assert spec.kind in KINDS
    assert isinstance(spec.display_name, str) and spec.display_name
    assert isinstance(spec.higher_is_better, bool)
    args = _inputs(spec.kind)
    if spec.parametrised:
        value = spec.fn(*args, 20)
    elif spec.kind == "class_probabilities":
        value = spec.fn(*args, eps=1e-10)
    else:
        value = spec.fn(*args)
    assert isinstance(value, torch.Tensor) and value.shape == (5,)
    assert value.dtype == torch.float64


def test_display_names_and_directions_come_from_the_registry():
    assert [
        display_name(c)
        for c in (
            "mad",
            "overlap_20",
            "overlap_7.5",
            "class_kld",
            "entropy",
            "entropy_base",
            "iou",
            "test_accuracy",
            "not_a_metric",
        )
    ] == [
        "MAD",
        "Overlap Rate@20%",
        "Overlap Rate@7.5%",
        "Class-KLD",
        "entropy (model)",
        "entropy (baseline)",
        "IoU",
        "test accuracy",
        "not_a_metric",
    ]
    assert [
        c
        for c in ("mad", "msd", "pearson", "spearman", "overlap_5", "class_kld", "cc", "kl")
        if not higher_is_better(c)
    ] == ["mad", "msd", "class_kld", "kl"]
    assert column_display_name("overlap_x") is None
    assert [spec.name for spec in metrics_of_kind("class_probabilities")] == ["class_kld"]


def test_an_incomplete_spec_is_refused():
    with pytest.raises(ValueError, match="kind"):
        register_metric("bad_kind", kind="pairs", display_name="Bad", higher_is_better=True)(lambda a, b: a)
    with pytest.raises(ValueError, match="higher_is_better"):
        register_metric("bad_direction", kind="map_pair", display_name="Bad", higher_is_better=None)(lambda a, b: a)
    with pytest.raises(ValueError, match="display_name"):
        register_metric("bad_name", kind="map_pair", display_name="", higher_is_better=True)(lambda a, b: a)
    assert not {"bad_kind", "bad_direction", "bad_name"} & set(METRICS)


@pytest.mark.parametrize("name", list(CAM_METHODS))
def test_every_cam_method_has_a_display_name(name):
    cls = CAM_METHODS[name]
    assert cls.name == name and isinstance(cls.display_name, str) and cls.display_name
    assert method_name(name) == cls.display_name
    assert method_name("gradcam") == "Grad-CAM"


@pytest.mark.parametrize("fill", list(FILLS))
def test_every_fill_gives_an_image_of_each_image(fill):
    images = torch.rand(2, 3, 8, 8)
    filled = removal_fill(images, fill, mean=(0.5, 0.4, 0.3))
    assert filled.shape == images.shape and torch.isfinite(filled).all()


# --- a metric and a CAM method registered from Python, end to end -------------------------------

USER_METRIC = "peak_gap"
USER_METRIC_DISPLAY = "Peak gap"
USER_METHOD = "positive_gradcam"
USER_METHOD_DISPLAY = "Positive-Gradient CAM"

TINY = {
    "name": "user-registered",
    "data": {"dataset": "fashion-mnist", "train_size": 200, "val_size": 50, "test_size": 30},
    "model": {"name": "small_cnn"},
    "training": {"epochs": 1, "batch_size": 50},
    "augmentations": ["affine"],
    "seeds": [0],
    "cam": {"method": USER_METHOD},
    "metrics": {"overlap_percentages": [20]},  # fewer figures to draw
    "controls": {"identity": False, "baseline_replicas": 0, "sanity_images": 0},
}


@pytest.fixture(scope="module")
def user_registered_run(tmp_path_factory, fashion_mnist_available):
    @register_map_metric(USER_METRIC, display_name=USER_METRIC_DISPLAY, higher_is_better=False)
    def peak_gap(base, other):
        return (base - other).abs().amax(dim=1)

    @register_cam_method
    class PositiveGradCAM(CAMMethod):
        """Grad-CAM with only the positive gradients averaged."""

        name = USER_METHOD
        display_name = USER_METHOD_DISPLAY

        def channel_weights(self, activations, gradients):
            return torch.relu(gradients).mean(dim=(2, 3))

    out = tmp_path_factory.mktemp("runs") / "user-registered"
    try:
        augcam.run_study(TINY, out, device="cpu")
        yield out
    finally:
        METRICS.pop(USER_METRIC)
        CAM_METHODS.pop(USER_METHOD)


def test_user_registered_metric_reaches_tables_figures_and_report(user_registered_run):
    out = user_registered_run
    metrics = pd.read_parquet(out / "tables" / "metrics.parquet")
    columns = list(metrics.columns)
    # after the built-in map metrics, before the overlap family (compare_maps's order)
    assert columns.index("spearman") + 1 == columns.index(USER_METRIC) == columns.index("overlap_20") - 1
    assert metrics[USER_METRIC].notna().all() and (metrics[USER_METRIC] >= 0).all()
    assert USER_METRIC in pd.read_parquet(out / "tables" / "aggregated.parquet").columns
    assert (out / "figures" / f"distribution_{USER_METRIC}.png").stat().st_size > 0
    report = (out / "report.html").read_text()
    assert USER_METRIC_DISPLAY in report


def test_user_registered_cam_method_is_named_by_its_display_name(user_registered_run):
    report = (user_registered_run / "report.html").read_text()
    assert USER_METHOD_DISPLAY in report
