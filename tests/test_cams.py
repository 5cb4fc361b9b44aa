"""CAM methods against reference implementations: pytorch-grad-cam for the CAM methods, Captum for
saliency (both dev dependencies). Every test that covers "all methods" iterates over the registry."""

from unittest import mock

import numpy as np
import pytest
import pytorch_grad_cam
import torch
import torch.nn.functional as F
from captum.attr import Saliency
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from augcam.cams import CAM_METHODS, compute, eval_mode, gradcam, linear_head_classifier, raw_cams, upsample
from augcam.config import CamConfig
from augcam.errors import ConfigError
from augcam.models import MODELS, LinearHead, build_model, get_layer

# (architecture, input channels, input side): every architecture at a size where its target layer
# is larger than 1×1; efficientnet_b0 also at the reference study's 224×224.
CASES = [
    ("small_cnn", 1, 28),
    ("small_cnn", 3, 32),
    ("resnet18", 3, 64),
    ("resnet18", 1, 64),
    ("efficientnet_b0", 3, 64),
    ("efficientnet_b0", 3, 224),
    ("cifar_resnet", 3, 32),
]


def calibrated_model(name, channels, side, num_classes=10):
    """A freshly initialised model whose BatchNorm statistics were measured on random images.

    At initialisation BatchNorm's running statistics are (0, 1), and EfficientNet-B0's last stage
    then outputs activations of ~1e-13 in eval mode: every map is below the 1e-7 normalisation
    guard, ≈ 0 everywhere, and a comparison with atol 1e-5 would prove nothing. Measured statistics
    give activations of order 1 and informative maps, as in a trained model."""
    model = build_model(name, channels, num_classes, init_seed=0)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average: the statistics of the calibration batch
    model.train()
    generator = torch.Generator().manual_seed(2)
    # Train mode runs EfficientNet's dropout and stochastic depth, which draw from the global RNG:
    # seeded here, so the statistics (and whether a map is informative) do not depend on which
    # tests ran before. (With a few other seeds one of the 1-image Score-CAM / Grad-CAM cases has
    # a constant map, which assert_informative rightly rejects.)
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        model(torch.randn(8, channels, side, side, generator=generator))
    return model


def assert_informative(maps):
    """Every map varies (not ≈ constant), so an equality at atol 1e-5 means something."""
    assert (maps.flatten(1).std(dim=1) > 0.01).all(), maps.flatten(1).std(dim=1)


def reference(model, layer, images, targets=None):
    cam = GradCAM(model=model, target_layers=[layer])
    wanted = None if targets is None else [ClassifierOutputTarget(int(t)) for t in targets]
    return torch.from_numpy(cam(input_tensor=images, targets=wanted))


@pytest.mark.parametrize("name,channels,side", CASES)
@pytest.mark.parametrize("by_label", [False, True])
def test_gradcam_equals_pytorch_grad_cam(name, channels, side, by_label):
    torch.manual_seed(1)
    model = calibrated_model(name, channels, side)
    layer = get_layer(model, MODELS[name].target_layer)
    images = torch.randn(3 if side == 224 else 5, channels, side, side)
    targets = torch.randint(0, 10, (len(images),)) if by_label else None
    ours = gradcam(model, layer, images, targets, optimize=False)
    expected = reference(model, layer, images, targets)
    assert ours.shape == (len(images), side, side)
    assert torch.allclose(ours, expected, atol=1e-5, rtol=0), (ours - expected).abs().max()
    assert_informative(ours)


def test_gradcam_densenet_matches_reference_without_inplace_relu():
    """torchvision's DenseNet applies an in-place ReLU to the target layer's output; on the CPU the
    reference's stored activations are changed by it. augcam captures the layer's own output, which
    equals the reference on a DenseNet whose forward has no in-place ReLU."""
    model = build_model("densenet121", 1, 10, init_seed=0)

    class NoInplaceReLU(type(model)):
        def forward(self, x):
            out = F.adaptive_avg_pool2d(F.relu(self.features(x)), 1)
            return self.classifier(torch.flatten(out, 1))

    twin = build_model("densenet121", 1, 10, init_seed=0)
    twin.__class__ = NoInplaceReLU
    images = torch.randn(3, 1, 64, 64)
    ours = gradcam(model, "features", images, optimize=False)
    assert torch.allclose(ours, reference(twin, twin.features, images), atol=1e-5, rtol=0)


def test_model_mode_and_hooks_restored():
    model = build_model("small_cnn", 1, 10, init_seed=0)
    model.train()
    model.features[1].eval()  # a mixed state must come back exactly
    layer = model.features
    gradcam(model, layer, torch.randn(2, 1, 28, 28))
    assert model.training and not model.features[1].training and model.features[4].training
    assert not layer._forward_hooks
    assert all(p.grad is None for p in model.parameters()), "no parameter gradients are filled"


def test_hook_removed_after_error():
    model = build_model("small_cnn", 1, 10, init_seed=0)
    with pytest.raises(RuntimeError):
        gradcam(model, model.features, torch.randn(2, 3, 28, 28))  # wrong channel count
    assert not model.features._forward_hooks
    assert model.training


def test_batching_changes_maps_only_by_rounding_and_reruns_are_identical():
    model = build_model("small_cnn", 1, 10, init_seed=0)
    images = torch.randn(7, 1, 28, 28)
    # CPU kernels pick algorithms by batch size, so batching moves values by float rounding only;
    # the study fixes the batch size, and then reruns are bit-identical.
    assert torch.allclose(
        gradcam(model, "features", images, batch_size=2), gradcam(model, "features", images), atol=1e-5, rtol=0
    )
    assert torch.equal(
        gradcam(model, "features", images, batch_size=2), gradcam(model, "features", images, batch_size=2)
    )


def test_raw_maps_are_layer_resolution_and_upsample_reproduces_gradcam():
    model = build_model("small_cnn", 1, 10, init_seed=0)
    images = torch.randn(4, 1, 28, 28)
    raw, logits = raw_cams("gradcam", model, "features", images)
    assert raw.shape == (4, 7, 7) and (raw >= 0).all()
    with eval_mode(model), torch.no_grad():
        assert torch.allclose(logits, model(images))
    assert torch.equal(upsample(raw, (28, 28)), gradcam(model, "features", images))


def test_upsample_constant_map_is_zero_not_nan():
    maps = upsample(torch.zeros(2, 7, 7), (28, 28))
    assert torch.equal(maps, torch.zeros(2, 28, 28))


def test_every_registered_method_gives_unit_range_maps():
    model = build_model("small_cnn", 1, 10, init_seed=0)
    from augcam.cams import compute

    for method in sorted(CAM_METHODS):
        maps = compute(method, model, "features", torch.randn(3, 1, 28, 28))
        assert maps.shape == (3, 28, 28)
        assert maps.min() >= 0 and maps.max() <= 1


# --- every registered method against its reference ---------------------------------------------


def _targets_list(targets):
    return None if targets is None else [ClassifierOutputTarget(int(t)) for t in targets]


def _pytorch_grad_cam_oracle(cam_class):
    def oracle(model, layer, images, targets):
        with cam_class(model=model, target_layers=[layer]) as cam:
            return torch.from_numpy(cam(input_tensor=images, targets=_targets_list(targets)))

    return oracle


def _sign_fixed_svd(svd):
    """np.linalg.svd with augcam's EigenCAM sign convention (each right singular vector's sum ≥ 0).
    pytorch-grad-cam keeps LAPACK's arbitrary sign, so without this the two could differ by a sign
    flip of the projection (which the ReLU turns into a different map) for reasons of no interest."""

    def fixed(matrix, *args, **kwargs):
        left, values, right = svd(matrix, *args, **kwargs)
        flip = np.where(right.sum(axis=1) < 0, -1, 1).astype(right.dtype)
        left = left.copy()
        left[:, : len(flip)] *= flip[: left.shape[1]]
        return left, values, right * flip[:, None]

    return fixed


def _eigencam_oracle(model, layer, images, targets):
    with mock.patch.object(np.linalg, "svd", _sign_fixed_svd(np.linalg.svd)):
        return _pytorch_grad_cam_oracle(pytorch_grad_cam.EigenCAM)(model, layer, images, targets)


def _saliency_oracle(model, layer, images, targets):
    """Captum's Saliency (|gradient| of the target logit w.r.t. the input), max over channels,
    per-image min-max."""
    model.eval()
    if targets is None:
        with torch.no_grad():
            targets = model(images).argmax(dim=1)
    gradients = Saliency(model).attribute(images, target=targets, abs=True)
    maps = gradients.amax(dim=1).flatten(1)
    low, high = maps.min(dim=1, keepdim=True).values, maps.max(dim=1, keepdim=True).values
    return ((maps - low) / (high - low)).view(gradients.shape[0], *gradients.shape[2:])


ORACLES = {
    "gradcam": _pytorch_grad_cam_oracle(pytorch_grad_cam.GradCAM),
    "gradcampp": _pytorch_grad_cam_oracle(pytorch_grad_cam.GradCAMPlusPlus),
    "hirescam": _pytorch_grad_cam_oracle(pytorch_grad_cam.HiResCAM),
    "xgradcam": _pytorch_grad_cam_oracle(pytorch_grad_cam.XGradCAM),
    "layercam": _pytorch_grad_cam_oracle(pytorch_grad_cam.LayerCAM),
    "scorecam": _pytorch_grad_cam_oracle(pytorch_grad_cam.ScoreCAM),
    "eigencam": _eigencam_oracle,
    "saliency": _saliency_oracle,
}

# Small sizes whose target layers are still larger than 1×1.
METHOD_CASES = [("small_cnn", 1, 28), ("resnet18", 3, 64), ("efficientnet_b0", 3, 64), ("cifar_resnet", 3, 32)]
GRADIENT_METHODS = sorted(m for m, cls in CAM_METHODS.items() if cls.uses_gradients and not cls.explains_input)
MODELS_WITH_HEAD = sorted(name for name, spec in MODELS.items() if spec.head is not None)


def _model_and_images(name, channels, side, count):
    model = calibrated_model(name, channels, side)
    generator = torch.Generator().manual_seed(1)
    return model, torch.randn(count, channels, side, side, generator=generator)


@pytest.mark.parametrize("method", sorted(CAM_METHODS))
@pytest.mark.parametrize("name,channels,side", METHOD_CASES)
@pytest.mark.parametrize("by_label", [False, True])
def test_method_equals_reference(method, name, channels, side, by_label):
    if method not in ORACLES:
        pytest.fail(f"CAM method {method!r} is registered but has no reference oracle in ORACLES")
    # Score-CAM runs one forward pass per channel: one image on the large models keeps it fast.
    count = 1 if method == "scorecam" and name != "small_cnn" else 3
    model, images = _model_and_images(name, channels, side, count)
    layer = get_layer(model, MODELS[name].target_layer)
    targets = torch.tensor([3, 7, 1][:count]) if by_label else None
    # The head a study passes: the fast path where the model declares one.
    ours = compute(method, model, layer, images, targets, head=MODELS[name].head, optimize=False)
    expected = ORACLES[method](model, layer, images, targets)
    assert ours.shape == (count, side, side) and ours.dtype == torch.float32
    assert torch.allclose(ours, expected, atol=1e-5, rtol=0), (ours - expected).abs().max()
    assert_informative(ours)


def test_config_accepts_every_registered_method_and_rejects_others():
    for method in CAM_METHODS:
        assert CamConfig(method=method).method == method
    with pytest.raises(ConfigError, match="unknown CAM method 'gradcamm'; did you mean 'gradcam'"):
        CamConfig(method="gradcamm")


@pytest.mark.parametrize("method", sorted(CAM_METHODS))
def test_every_method_restores_mode_and_hooks_and_fills_no_parameter_gradients(method):
    model = build_model("small_cnn", 1, 10, init_seed=0)
    model.train()
    model.features[1].eval()
    maps, logits = raw_cams(method, model, "features", torch.randn(2, 1, 28, 28), head=MODELS["small_cnn"].head)
    side = 28 if CAM_METHODS[method].explains_input else 7
    assert maps.shape == (2, side, side) and (maps >= 0).all() and logits.shape == (2, 10)
    assert model.training and not model.features[1].training and model.features[4].training
    assert not any(m._forward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_scorecam_batches_masked_images_across_image_boundaries():
    model, images = _model_and_images("small_cnn", 1, 28, 3)
    # 7 masked images per forward: chunks mix channels of different images.
    chunked = compute("scorecam", model, "features", images, batch_size=7)
    assert torch.allclose(chunked, compute("scorecam", model, "features", images), atol=1e-5, rtol=0)


def test_eigencam_sign_convention():
    """The projection grows with the pixel's total activation, whatever sign LAPACK returns."""
    from augcam.cams.base import LayerCapture
    from augcam.cams.methods import EigenCAM

    activations = torch.rand(2, 5, 4, 4)
    capture = LayerCapture(None, None, activations, None, None, 1)
    projection = EigenCAM().layer_map(capture).flatten(1)
    total = activations.sum(dim=1).flatten(1)
    assert (((total - total.mean(dim=1, keepdim=True)) * projection).sum(dim=1) >= 0).all()
    # Flipping the activations' sign flips the centred matrix; the map stays tied to activation.
    flipped = EigenCAM().layer_map(LayerCapture(None, None, -activations, None, None, 1)).flatten(1)
    assert torch.allclose(flipped, -projection, atol=1e-6)


# --- the fast linear-head path ------------------------------------------------------------------

FAST_CASES = [(name, 3, 28 if name == "small_cnn" else 64) for name in MODELS_WITH_HEAD]


@pytest.mark.parametrize("method", GRADIENT_METHODS)
@pytest.mark.parametrize("name,channels,side", FAST_CASES)
def test_fast_path_equals_general_path(method, name, channels, side):
    model, images = _model_and_images(name, channels, side, 4)
    head = MODELS[name].head
    fast_raw, fast_logits = raw_cams(method, model, head.layer, images, head=head)
    general_raw, general_logits = raw_cams(method, model, head.layer, images)
    # The same forward pass: identical logits, hence identical predicted classes (targets).
    assert torch.equal(fast_logits, general_logits)
    scale = general_raw.flatten(1).amax(dim=1)[:, None, None]
    assert torch.allclose(fast_raw / scale, general_raw / scale, atol=1e-5, rtol=0)
    fast, general = upsample(fast_raw, (side, side)), upsample(general_raw, (side, side))
    assert torch.allclose(fast, general, atol=1e-5, rtol=0), (fast - general).abs().max()
    assert_informative(fast)


def _count_backward_passes(monkeypatch):
    calls = []
    original = torch.autograd.grad

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counting)
    return calls


def test_fast_path_runs_no_backward_pass_and_other_layers_fall_back(monkeypatch):
    model, images = _model_and_images("resnet18", 3, 64, 2)
    head = MODELS["resnet18"].head
    calls = _count_backward_passes(monkeypatch)
    gradcam(model, "layer4", images, head=head)
    assert calls == []
    # layer3 does not feed the pooling: the declared head does not apply, the general path runs.
    assert linear_head_classifier(model, get_layer(model, "layer3"), head) is None
    ours = gradcam(model, "layer3", images, head=head, optimize=False)
    assert calls == [1]
    assert torch.allclose(ours, reference(model, model.layer3, images), atol=1e-5, rtol=0)
    # Methods that use no gradients ignore the head.
    compute("eigencam", model, "layer4", images, head=head)
    assert calls == [1]


def test_densenet_declares_no_head_and_a_wrong_declaration_is_caught():
    """DenseNet's forward applies ReLU between `features` and the pooling, so its logits are not a
    linear function of the pooled target layer: it declares no head and takes the general path.
    Declaring one anyway is caught by the per-batch check of the logits."""
    assert MODELS["densenet121"].head is None
    model = build_model("densenet121", 1, 10, init_seed=0)
    model.unused_pool = torch.nn.AdaptiveAvgPool2d(1)  # a pooling module to name; forward ignores it
    wrong = LinearHead(layer="features", pool="unused_pool", classifier="classifier")
    with pytest.raises(ValueError, match="declared LinearHead does not hold"):
        gradcam(model, "features", torch.randn(2, 1, 64, 64), head=wrong)
    with pytest.raises(ValueError, match="not a global average pooling"):
        gradcam(
            model,
            "features",
            torch.randn(2, 1, 64, 64),
            head=LinearHead(layer="features", pool="features.pool0", classifier="classifier"),
        )


# --- the inference copy (optimize=True, the default) -------------------------------------------
# It computes with other convolution algorithms (BatchNorm folded, channels_last), which round
# differently from the model as given; pytorch-grad-cam's maps are themselves only float32-close
# to the exact ones. So the copy's maps are held to the reference's own accuracy: their distance
# from float64 maps (the same model and images in double precision, augcam's plain path, which
# equals the oracles above in float32) must be within 1e-5 or at most 3× pytorch-grad-cam's.

# Every registered architecture, at a size where its target layer is larger than 1×1.
ALL_MODEL_CASES = {
    "small_cnn": (1, 28),
    "tang_cnn": (1, 28),
    "resnet18": (3, 64),
    "efficientnet_b0": (3, 64),
    "densenet121": (1, 64),
    "cifar_resnet": (3, 32),
}


def test_every_registered_model_has_an_inference_copy_case():
    assert sorted(ALL_MODEL_CASES) == sorted(MODELS)


def _float64_maps(method, model, layer_name, images, targets=None):
    from copy import deepcopy

    return compute(method, deepcopy(model).double(), layer_name, images.double(), targets, optimize=False).float()


def _assert_as_accurate_as(ours, expected, exact):
    reference_error = float((expected - exact).abs().max())
    our_error = float((ours - exact).abs().max())
    assert our_error <= max(1e-5, 3 * reference_error), (our_error, reference_error)


@pytest.mark.parametrize("name", sorted(ALL_MODEL_CASES))
def test_inference_copy_gradcam_is_as_accurate_as_pytorch_grad_cam(name):
    channels, side = ALL_MODEL_CASES[name]
    model, images = _model_and_images(name, channels, side, 4)
    layer_name = MODELS[name].target_layer
    ours = gradcam(model, layer_name, images, head=MODELS[name].head)
    expected = reference(model, get_layer(model, layer_name), images)
    if name == "densenet121":  # its in-place ReLU changes the reference's stored activations
        expected = gradcam(model, layer_name, images, optimize=False)
    _assert_as_accurate_as(ours, expected, _float64_maps("gradcam", model, layer_name, images))
    assert_informative(ours)


@pytest.mark.parametrize("method", sorted(CAM_METHODS))
@pytest.mark.parametrize("name,channels,side", [("small_cnn", 1, 28), ("resnet18", 3, 64)])
def test_inference_copy_is_as_accurate_as_the_reference_for_every_method(method, name, channels, side):
    count = 1 if method == "scorecam" and name != "small_cnn" else 3
    model, images = _model_and_images(name, channels, side, count)
    layer_name = MODELS[name].target_layer
    ours = compute(method, model, layer_name, images, head=MODELS[name].head)
    expected = ORACLES[method](model, get_layer(model, layer_name), images, None)
    _assert_as_accurate_as(ours, expected, _float64_maps(method, model, layer_name, images))


def test_inference_copy_folds_batch_norm_and_leaves_the_model_untouched():
    from augcam.cams import inference_copy

    model = calibrated_model("resnet18", 3, 64)
    model.train()
    model.layer1[0].bn1.eval()
    hook = model.layer2.register_forward_hook(lambda *args: None)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    copy, layer = inference_copy(model, "layer4")
    assert layer is copy.layer4 and layer is not model.layer4
    # Every BatchNorm of ResNet-18 follows a convolution: all are folded away.
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in copy.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 20
    assert not copy.training and not any(p.requires_grad for p in copy.parameters())
    assert copy.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    # The original: same parameters and buffers, modes, gradient flags, layout and hooks.
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert model.training and not model.layer1[0].bn1.training and model.layer1[0].bn2.training
    assert all(p.requires_grad for p in model.parameters())
    assert model.conv1.weight.is_contiguous() and len(model.layer2._forward_hooks) == 1
    hook.remove()
    images = torch.randn(2, 3, 64, 64)
    with eval_mode(model), torch.no_grad():
        torch.testing.assert_close(copy(images), model(images), rtol=1e-4, atol=1e-4)


def test_inference_copy_keeps_the_target_convolution_and_its_batch_norm():
    from augcam.cams import inference_copy

    model = calibrated_model("small_cnn", 1, 28)
    # features.4 is a convolution followed by BatchNorm features.5: folding would change the
    # output the CAM reads. The other two pairs are folded.
    copy, layer = inference_copy(model, "features.4")
    assert isinstance(layer, torch.nn.Conv2d) and isinstance(copy.features[5], torch.nn.BatchNorm2d)
    assert isinstance(copy.features[1], torch.nn.Identity) and isinstance(copy.features[9], torch.nn.Identity)
    images = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(
        gradcam(model, "features.4", images), gradcam(model, "features.4", images, optimize=False), rtol=0, atol=1e-5
    )


def test_inference_copy_keeps_a_pair_that_straddles_the_target_layer():
    from augcam.cams import inference_copy

    class Straddling(torch.nn.Module):  # the target block ends in a convolution; its BatchNorm follows
        def __init__(self):
            super().__init__()
            self.block = torch.nn.Sequential(
                torch.nn.Conv2d(1, 4, 3, padding=1),
                torch.nn.BatchNorm2d(4),
                torch.nn.ReLU(),
                torch.nn.Conv2d(4, 6, 3, padding=1),
            )
            self.norm = torch.nn.BatchNorm2d(6)
            self.classifier = torch.nn.Linear(6, 3)

        def forward(self, x):
            return self.classifier(torch.relu(self.norm(self.block(x))).mean(dim=(2, 3)))

    model = Straddling()
    with torch.no_grad():
        model(torch.randn(16, 1, 8, 8))  # BatchNorm statistics of order 1
    model.eval()
    copy, _ = inference_copy(model, "block")
    assert isinstance(copy.norm, torch.nn.BatchNorm2d)  # block.3 → norm straddles: kept
    assert isinstance(copy.block[1], torch.nn.Identity)  # block.0 → block.1 inside: folded
    images = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(
        gradcam(model, "block", images), gradcam(model, "block", images, optimize=False), rtol=0, atol=1e-5
    )


def test_inference_copy_keeps_batch_norm_without_running_statistics():
    from augcam.cams import inference_copy

    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4, track_running_stats=False),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    )
    copy, _ = inference_copy(model, "2")
    assert isinstance(copy[1], torch.nn.BatchNorm2d)  # batch statistics: not an affine map to fold
    images = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(
        gradcam(model, "2", images), gradcam(model, "2", images, optimize=False), rtol=0, atol=1e-5
    )


def test_inference_copy_of_a_model_fx_cannot_trace_keeps_batch_norm(caplog):
    from augcam.cams import inference_copy

    class DataDependent(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.features = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4))
            self.classifier = torch.nn.Linear(4, 3)

        def forward(self, x):
            features = self.features(x)
            if features.sum() > 0:  # data-dependent control flow: torch.fx cannot trace this
                features = features * 2
            return self.classifier(features.mean(dim=(2, 3)))

    model = DataDependent().eval()
    with caplog.at_level("INFO", logger="augcam.cams.base"):
        copy, _ = inference_copy(model, "features")
    assert isinstance(copy.features[1], torch.nn.BatchNorm2d)
    assert "torch.fx cannot trace DataDependent" in caplog.text
    images = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(
        gradcam(model, "features", images), gradcam(model, "features", images, optimize=False), rtol=0, atol=1e-6
    )


def test_capture_output_keeps_gradients_flowing_past_the_layer_unless_asked():
    from augcam.cams import capture_output

    model = build_model("small_cnn", 1, 10, init_seed=0)
    images = torch.randn(2, 1, 28, 28)
    with capture_output(model.features[4]) as outputs:
        model(images).sum().backward()
    assert model.features[0].weight.grad is not None and outputs[0].grad_fn is not None
    model.zero_grad(set_to_none=True)
    with capture_output(model.features[4], as_leaf=True) as outputs:
        model(images).sum().backward()
    # The captured output is the graph's leaf: it gets the gradient, the layers before it none.
    assert model.features[0].weight.grad is None and model.features[8].weight.grad is not None
    assert outputs[0].is_leaf and outputs[0].grad is not None
