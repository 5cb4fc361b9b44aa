import warnings

import pytest
import torch

from augcam.cams import capture_output, linear_head_classifier
from augcam.errors import ConfigError
from augcam.models import MODELS, build_model, get_layer, register_model
from augcam.training import state_digest


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("channels", [1, 3])
def test_every_model_builds_and_classifies(name, channels):
    model = build_model(name, channels, num_classes=7, init_seed=0)
    side = 28 if name in ("small_cnn", "tang_cnn") else 64
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, channels, side, side)).shape == (2, 7)
    get_layer(model, MODELS[name].target_layer)  # the default target layer exists


@pytest.mark.parametrize("name", sorted(MODELS))
def test_initial_weights_depend_on_init_seed_only(name):
    torch.manual_seed(123)
    a = build_model(name, 1, 10, init_seed=5)
    torch.manual_seed(999)  # the global RNG does not matter
    b = build_model(name, 1, 10, init_seed=5)
    c = build_model(name, 1, 10, init_seed=6)
    assert state_digest(a) == state_digest(b)
    assert state_digest(a) != state_digest(c)


def test_unknown_model_and_layer_messages():
    with pytest.raises(ConfigError, match=r"unknown model 'resnet81'; did you mean 'resnet18'\?.*valid:"):
        build_model("resnet81", 3, 10, 0)
    model = build_model("small_cnn", 1, 10, 0)
    with pytest.raises(ConfigError, match="has no layer 'featurs'; did you mean 'features'"):
        get_layer(model, "featurs")


def test_user_model_registration_and_duplicate_warning():
    @register_model("tiny_test_net", target_layer="0")
    def tiny(in_channels, num_classes):
        return torch.nn.Sequential(
            torch.nn.Conv2d(in_channels, 4, 3),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(4, num_classes),
        )

    try:
        assert build_model("tiny_test_net", 1, 3, 0)(torch.randn(1, 1, 8, 8)).shape == (1, 3)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            register_model("tiny_test_net", target_layer="0")(tiny)
        assert any("registered twice" in str(w.message) for w in caught)
    finally:
        MODELS.pop("tiny_test_net")


def _logits_and_linear_head_logits(model, layer_name, classifier, side):
    """The model's logits and classifier(spatial mean of the layer's output), in eval mode."""
    model.eval()
    with capture_output(get_layer(model, layer_name)) as outputs, torch.no_grad():
        logits = model(torch.randn(3, 1, side, side, generator=torch.Generator().manual_seed(0)))
    return logits, classifier(outputs[0].mean(dim=(2, 3)))


@pytest.mark.parametrize("name", sorted(n for n, spec in MODELS.items() if spec.head is not None))
def test_declared_linear_heads_hold(name):
    """logits = classifier(mean of the head's layer): the fast CAM path's premise, checked on the
    real forward pass (relative tolerance: an untrained EfficientNet's logits are ~1e-13)."""
    spec = MODELS[name]
    assert spec.head.layer == spec.target_layer
    model = build_model(name, 1, 10, init_seed=0)
    classifier = linear_head_classifier(model, get_layer(model, spec.head.layer), spec.head)
    assert isinstance(classifier, torch.nn.Linear)
    logits, head_logits = _logits_and_linear_head_logits(
        model, spec.head.layer, classifier, 28 if name == "small_cnn" else 64
    )
    assert torch.allclose(head_logits, logits, rtol=1e-4, atol=1e-5 * float(logits.abs().max()))


def test_densenet_is_not_linear_after_pooling():
    """DenseNet's forward applies ReLU to `features` before pooling, so it must declare no head."""
    assert MODELS["densenet121"].head is None
    model = build_model("densenet121", 1, 10, init_seed=0)
    logits, head_logits = _logits_and_linear_head_logits(model, "features", model.classifier, 64)
    assert not torch.allclose(head_logits, logits, rtol=1e-2, atol=0)


def test_tang_cnn_is_two_convolutions_and_one_linear_layer():
    model = build_model("tang_cnn", 1, 10, init_seed=0)
    kinds = [type(m) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert kinds == [torch.nn.Conv2d, torch.nn.Conv2d, torch.nn.Linear]
    with capture_output(get_layer(model, MODELS["tang_cnn"].target_layer)) as outputs, torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    assert outputs[0].shape == (1, 16, 7, 7)
