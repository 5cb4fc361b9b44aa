"""CAMs of transformers and library models against pytorch-grad-cam with the `reshape_transform`
its documentation has users write by hand (augcam finds the layout itself), for every CAM method
that reads a layer; the cascading randomisation check on transformers."""

from copy import deepcopy
from unittest import mock

import numpy as np
import pytest
import pytorch_grad_cam
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from test_cams import _assert_as_accurate_as, _sign_fixed_svd, assert_informative, calibrated_model

from augcam.cams import CAM_METHODS, compute
from augcam.cams.sanity import cascading_randomization, layers_in_forward_order, sanity_verdict
from augcam.models import build_model, find_linear_head, find_target_layer, get_layer


def tokens_to_maps(prefix, height, width):
    """pytorch-grad-cam's ViT `reshape_transform` (its docs), with the prefix-token count as a parameter."""

    def reshape_transform(tensor):
        result = tensor[:, prefix:, :].reshape(tensor.size(0), height, width, tensor.size(2))
        return result.transpose(2, 3).transpose(1, 2)

    return reshape_transform


def channels_last_to_maps(tensor):
    """The Swin `reshape_transform` for a (B, H, W, C) output."""
    return tensor.transpose(2, 3).transpose(1, 2)


# (name, params, channels, side, target layer or None for the automatic one, reshape_transform)
CASES = {
    "torchvision-vit": ("torchvision:vit_b_16", {"image_size": 64}, 3, 64, None, tokens_to_maps(1, 4, 4)),
    "torchvision-swin": ("torchvision:swin_t", {}, 3, 64, "features", channels_last_to_maps),
    "timm-vit-registers": (
        "timm:vit_tiny_patch16_224",
        {"img_size": 32, "patch_size": 8, "reg_tokens": 4, "depth": 4},
        1,
        32,
        None,
        tokens_to_maps(5, 4, 4),
    ),
    "timm-deit-distilled": (
        "timm:deit_tiny_distilled_patch16_224",
        {"img_size": 32, "patch_size": 8, "depth": 4},
        3,
        32,
        None,
        tokens_to_maps(2, 4, 4),
    ),
    # timm's Swin at a small width: channels-last, its final norm found automatically.
    "timm-swin": (
        "timm:swin_tiny_patch4_window7_224",
        {"img_size": 128, "window_size": 2, "embed_dim": 24, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1)},
        3,
        128,
        None,
        channels_last_to_maps,
    ),
    # A CNN whose GAP → linear head is proved by tracing: the fast path.
    "timm-resnet": ("timm:resnet18", {}, 3, 64, None, None),
}
LAYER_METHODS = sorted(m for m, cls in CAM_METHODS.items() if not cls.explains_input)


# Torchvision's untrained Swin-T gives HiResCAM maps of ~1e-6 summed from 768 channels that cancel:
# float32 rounding (numpy's in the reference, torch's here) moves the normalised maps by 1e-2, so it
# is compared in float64, where both agree to 1e-7.
IN_FLOAT64 = {"torchvision-swin"}


def _images(count, channels, side):
    """Noise with a bright square that moves from image to image: EigenCAM's first principal
    component is then well defined (on pure noise its sign is a tie that rounding decides)."""
    images = 0.3 * torch.randn(count, channels, side, side, generator=torch.Generator().manual_seed(1))
    square = side // 4
    for k in range(count):
        row, col = (k * square) % (side - square), side // 2 - square + k
        images[k, :, row : row + square, col : col + square] += 3
    return images


def _case(key, count):
    name, params, channels, side, layer_name, reshape = CASES[key]
    if name.startswith("timm:"):
        pytest.importorskip("timm")
    if params:
        model = build_model(name, channels, 10, init_seed=0, params=params).eval()
    else:  # BatchNorm statistics measured, as for the CNNs of test_cams (informative maps)
        model = calibrated_model(name, channels, side).eval()
    if hasattr(model, "heads"):  # torchvision's ViT initialises its head to zero: every gradient would be 0
        torch.nn.init.normal_(model.heads.head.weight, std=0.02, generator=torch.Generator().manual_seed(0))
    images = _images(count, channels, side)
    if key in IN_FLOAT64:
        model, images = model.double(), images.double()
    if layer_name is None:
        layer_name, _ = find_target_layer(model, images)
    return model, layer_name, images, reshape


def _oracle(method, model, layer, images, targets, reshape):
    cam_class = {
        "gradcam": pytorch_grad_cam.GradCAM,
        "gradcampp": pytorch_grad_cam.GradCAMPlusPlus,
        "hirescam": pytorch_grad_cam.HiResCAM,
        "xgradcam": pytorch_grad_cam.XGradCAM,
        "layercam": pytorch_grad_cam.LayerCAM,
        "scorecam": pytorch_grad_cam.ScoreCAM,
        "eigencam": pytorch_grad_cam.EigenCAM,
    }[method]
    wanted = None if targets is None else [ClassifierOutputTarget(int(t)) for t in targets]
    with (
        mock.patch.object(np.linalg, "svd", _sign_fixed_svd(np.linalg.svd)),
        cam_class(model=model, target_layers=[layer], reshape_transform=reshape) as cam,
    ):
        return torch.from_numpy(cam(input_tensor=images, targets=wanted))


@pytest.mark.parametrize("method", LAYER_METHODS)
@pytest.mark.parametrize("key", sorted(CASES))
def test_method_equals_pytorch_grad_cam_with_its_reshape_transform(method, key):
    # Score-CAM runs one forward pass per channel and image (768 for ViT-B/16 and Swin-T, about 45 s
    # each here): one image keeps it affordable.
    model, layer_name, images, reshape = _case(key, 1 if method == "scorecam" else 2)
    targets = torch.tensor([3, 7][: len(images)]) if method == "gradcam" else None
    head = find_linear_head(model, layer_name)
    assert (head is not None) == (key == "timm-resnet")
    ours = compute(method, model, layer_name, images, targets, head=head, optimize=False)
    expected = _oracle(method, model, get_layer(model, layer_name), images, targets, reshape)
    assert ours.shape == expected.shape == (len(images), *images.shape[-2:])
    assert torch.allclose(ours, expected, atol=1e-5, rtol=0), (ours - expected).abs().max()
    assert_informative(ours)


@pytest.mark.parametrize("key", ["torchvision-vit", "timm-deit-distilled"])
def test_inference_copy_of_a_transformer_is_as_accurate_as_pytorch_grad_cam(key):
    model, layer_name, images, reshape = _case(key, 2)
    ours = compute("gradcam", model, layer_name, images)
    expected = _oracle("gradcam", model, get_layer(model, layer_name), images, None, reshape)
    exact = compute("gradcam", deepcopy(model).double(), layer_name, images.double(), optimize=False).float()
    _assert_as_accurate_as(ours, expected, exact)


@pytest.mark.parametrize("key", ["timm-deit-distilled", "timm-vit-registers"])
def test_cascading_randomisation_runs_on_transformers(key):
    """Every module owning parameters is re-initialised, the class token and position embedding
    (owned by modules without `reset_parameters`) included, and the maps move away."""
    model, layer_name, images, _ = _case(key, 4)
    before = {name: p.clone() for name, p in model.named_parameters()}
    table = cascading_randomization(model, layer_name, images, method="gradcam")
    order = layers_in_forward_order(model, images)
    assert len(table) == len(order) + 1 and table["step"].tolist() == list(range(len(order) + 1))
    assert table["layer"].iloc[-1] == order[0]  # the input side last
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())  # a copy was randomised
    verdict = sanity_verdict(table)
    assert verdict["steps"] == len(order) and verdict["final_median"] < 0.9
