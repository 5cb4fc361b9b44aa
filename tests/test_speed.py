"""Issue 6 (speed): the refusal of 1×1 CAM layers, the `cifar10-fast` preset and its model, the
GPU training recipe options (precision, channels_last, compile) and the training benchmark."""

import pytest
import torch

from augcam.config import load_config
from augcam.errors import ConfigError
from augcam.study import prepare

from test_study import _write_cifar


def test_a_1x1_target_layer_is_refused_with_the_field_the_size_and_the_reason(tmp_path):
    # EfficientNet-B0 downsamples 32×: its last stage is 1×1 on CIFAR's own 32×32 images.
    _write_cifar(tmp_path)
    config = load_config("thesis-cifar10", overrides={"data.root": str(tmp_path), "data.image_size": 32,
                                                      "data.train_size": 2, "data.val_size": 2, "data.test_size": 2})
    with pytest.raises(ConfigError, match=r"model\.target_layer: 'features\.8' of efficientnet_b0 is 1×1 at "
                                          r"32×32 input, so every CAM would be constant") as caught:
        prepare(config)
    assert "data.image_size" in str(caught.value)
    # At 64×64 the same layer is 2×2 and accepted.
    config = load_config("thesis-cifar10", overrides={"data.root": str(tmp_path), "data.image_size": 64,
                                                      "data.train_size": 2, "data.val_size": 2, "data.test_size": 2})
    assert prepare(config).layer_size == (2, 2)
