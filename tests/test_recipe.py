"""The training recipe's registries (optimizers, schedules, precisions) and the config fields that name them."""

import contextlib

import pytest
import torch

from augcam.config import load_config
from augcam.errors import ConfigError
from augcam.training import (
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    TrainingData,
    TrainSettings,
    make_optimizer,
    precision_context,
    scheduled_lr,
    train_model,
)

MINIMAL = {"name": "t", "augmentations": ["affine"]}
REGISTRIES = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "precision": PRECISIONS}


def registered(field):
    return [(field, name) for name in REGISTRIES[field]]


@pytest.mark.parametrize("field, name", registered("optimizer") + registered("schedule") + registered("precision"))
def test_the_config_accepts_every_registered_name(field, name):
    config = load_config({**MINIMAL, "training": {field: name}})
    assert getattr(config.training, field) == name


@pytest.mark.parametrize("field", list(REGISTRIES))
def test_an_unknown_name_names_the_field_and_lists_the_registered_ones(field):
    with pytest.raises(ConfigError) as caught:
        load_config({**MINIMAL, "training": {field: "no_such_entry"}})
    message = str(caught.value)
    assert f"training.{field}" in message
    assert f"valid: {', '.join(sorted(REGISTRIES[field]))}" in message


def test_the_built_in_names_and_defaults():
    assert list(OPTIMIZERS) == ["adam", "sgd_nesterov"]
    assert list(SCHEDULES) == ["constant", "onecycle"]
    assert list(PRECISIONS) == ["fp32", "bf16"]
    training = load_config(MINIMAL).training
    assert (training.optimizer, training.schedule, training.precision) == ("adam", "constant", "fp32")
    assert training.recipe() == {}


def tiny_data():
    g = torch.Generator().manual_seed(0)
    images, labels = torch.rand(24, 1, 8, 8, generator=g), torch.arange(24) % 3
    return TrainingData(images, labels, images[:8], labels[:8], (0.5,), (0.25,))


def tiny_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))


def test_a_registered_optimizer_is_accepted_by_the_config_and_trains(monkeypatch):
    built = []

    def adamw(model, settings):
        built.append(settings.lr)
        return torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)

    with pytest.raises(ConfigError, match="unknown optimizer 'adamw'"):
        load_config({**MINIMAL, "training": {"optimizer": "adamw"}})
    monkeypatch.setitem(OPTIMIZERS, "adamw", adamw)
    config = load_config({**MINIMAL, "training": {"optimizer": "adamw"}})
    assert config.training.optimizer == "adamw"
    assert config.training.recipe() == {"optimizer": "adamw"}  # so it is in the model id
    settings = TrainSettings(1, 8, 0.01, 0.0, 0, 1, 8, optimizer="adamw")
    result = train_model(tiny_model(), tiny_data(), settings, None, seed=0)
    assert built == [0.01] and result.best_epoch == 1


def test_the_optimizer_entries_build_the_reference_optimizers():
    model = tiny_model()
    adam = make_optimizer(model, TrainSettings(1, 8, 0.01, 1e-4, 0, 1, 8))
    assert type(adam) is torch.optim.Adam
    assert (adam.defaults["lr"], adam.defaults["weight_decay"]) == (0.01, 1e-4)
    sgd = make_optimizer(model, TrainSettings(1, 8, 0.01, 1e-4, 0, 1, 8, optimizer="sgd_nesterov"))
    assert type(sgd) is torch.optim.SGD
    assert (sgd.defaults["momentum"], sgd.defaults["nesterov"], sgd.defaults["weight_decay"]) == (0.9, True, 1e-4)


def test_the_constant_schedule_never_touches_the_learning_rate(monkeypatch):
    assert scheduled_lr(TrainSettings(1, 8, 0.01, 0.0, 0, 1, 8), 3, 10) is None
    seen = []
    original = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    train_model(tiny_model(), tiny_data(), TrainSettings(1, 8, 0.01, 0.0, 0, 1, 8), None, seed=0)
    assert seen == [0.01] * 3


def test_precision_entries():
    cpu = torch.device("cpu")
    assert isinstance(precision_context(cpu, "fp32"), contextlib.nullcontext)
    with precision_context(cpu, "bf16"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with pytest.raises(ConfigError, match="training.precision: unknown precision 'fp16'"):
        precision_context(cpu, "fp16")
