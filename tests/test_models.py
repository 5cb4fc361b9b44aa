import warnings

import pytest
import torch

from augcam.errors import ConfigError
from augcam.models import MODELS, build_model, get_layer, register_model
from augcam.train import state_digest


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("channels", [1, 3])
def test_every_model_builds_and_classifies(name, channels):
    model = build_model(name, channels, num_classes=7, init_seed=0)
    side = 28 if name == "small_cnn" else 64
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
        return torch.nn.Sequential(torch.nn.Conv2d(in_channels, 4, 3), torch.nn.ReLU(),
                                   torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, num_classes))

    try:
        assert build_model("tiny_test_net", 1, 3, 0)(torch.randn(1, 1, 8, 8)).shape == (1, 3)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            register_model("tiny_test_net", target_layer="0")(tiny)
        assert any("registered twice" in str(w.message) for w in caught)
    finally:
        MODELS.pop("tiny_test_net")
