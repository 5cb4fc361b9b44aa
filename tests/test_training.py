"""The methodology's controls, checked on the training loop itself."""

import dataclasses

import pytest
import torch

from augcam.augment import build_augmentation
from augcam.models import build_model
from augcam.training import (
    TrainingData,
    TrainingDiverged,
    TrainSettings,
    augmentation_generator,
    epoch_order,
    load_train_state,
    save_train_state,
    state_digest,
    train_model,
)


class Recorder:
    """Wraps an augmentation and records what the training loop hands it."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = []

    def __call__(self, images, generator):
        probe = torch.Generator().set_state(generator.get_state())
        self.calls.append((images.clone(), torch.rand(4, generator=probe)))
        return self.inner(images, generator)


def tiny_data(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, 12, 12, generator=g)
    labels = torch.arange(n) % 4
    return TrainingData(images, labels, images[:8], labels[:8], (0.5,), (0.25,))


SETTINGS = TrainSettings(
    epochs=2, batch_size=16, lr=1e-3, weight_decay=1e-5, ordering_seed=3, copies=1, eval_batch_size=64
)


def small_model():
    return build_model("small_cnn", 1, 4, init_seed=0)


def test_epoch_order_covers_each_position_once_and_depends_on_seed_and_epoch_only():
    order = epoch_order(10, 2, ordering_seed=5, epoch=0)
    assert sorted(order.tolist()) == list(range(30))
    assert torch.equal(order, epoch_order(10, 2, 5, 0))
    assert not torch.equal(order, epoch_order(10, 2, 5, 1))
    assert not torch.equal(order, epoch_order(10, 2, 6, 0))
    # Every source appears once as the original and once per copy.
    assert torch.bincount(order % 10).tolist() == [3] * 10


def test_same_sources_and_random_stream_across_augmentations_for_one_seed():
    data = tiny_data()
    recorders = {name: Recorder(build_augmentation(name)) for name in ("affine", "cutmix", "gaussian_blur")}
    for recorder in recorders.values():
        train_model(small_model(), data, SETTINGS, recorder, seed=7)
    calls = [recorder.calls for recorder in recorders.values()]
    assert len(calls[0]) == 2 * 5  # 2 epochs × ceil(80 / 16) batches, each with some copies
    for other in calls[1:]:
        assert len(other) == len(calls[0])
        for (images_a, draws_a), (images_b, draws_b) in zip(calls[0], other):
            assert torch.equal(images_a, images_b), "position p must read the same source image"
            assert torch.equal(draws_a, draws_b), "one seed, one random stream, whatever the augmentation"
    total = sum(len(images) for images, _ in calls[0])
    assert total == 2 * 40, "each epoch augments every source image exactly once per copy"


def test_another_seed_changes_the_random_stream_not_the_sources():
    data = tiny_data()
    a, b = Recorder(build_augmentation("affine")), Recorder(build_augmentation("affine"))
    train_model(small_model(), data, SETTINGS, a, seed=0)
    train_model(small_model(), data, SETTINGS, b, seed=1)
    assert all(torch.equal(x[0], y[0]) for x, y in zip(a.calls, b.calls))
    assert not torch.equal(a.calls[0][1], b.calls[0][1])
    assert augmentation_generator(0, 0, 0).initial_seed() != augmentation_generator(1, 0, 0).initial_seed()


def test_training_is_deterministic_and_keeps_best_validation_checkpoint():
    data = tiny_data()
    runs = [train_model(small_model(), data, SETTINGS, build_augmentation("affine"), seed=0) for _ in range(2)]
    assert [row["train_loss"] for row in runs[0].history] == [row["train_loss"] for row in runs[1].history]
    assert all(torch.equal(runs[0].best_state[k], runs[1].best_state[k]) for k in runs[0].best_state)
    best = runs[0]
    accuracies = [row["val_accuracy"] for row in best.history]
    assert best.best_val_accuracy == max(accuracies)
    assert best.best_epoch == accuracies.index(max(accuracies)) + 1  # the first epoch on ties
    assert runs[0].initial_digest == state_digest(small_model())


def test_baseline_sees_each_image_once_per_epoch():
    data = tiny_data()
    result = train_model(small_model(), data, SETTINGS, None, seed=0)
    assert [row["images"] for row in result.history] == [40, 40]
    augmented = train_model(small_model(), data, SETTINGS, build_augmentation("affine"), seed=0)
    assert [row["images"] for row in augmented.history] == [80, 80]


# --- resuming from a per-epoch checkpoint --------------------------------------------------------


class DropoutCNN(torch.nn.Module):
    """A model that draws from the global RNG while training (dropout), unlike the built-in ones."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(144, 32), torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Linear(32, 4)
        )

    def forward(self, x):
        return self.body(x)


def _same_result(a, b):
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in a.history] == [
        {k: v for k, v in row.items() if k != "seconds"} for row in b.history
    ]
    assert (a.best_epoch, a.best_val_accuracy) == (b.best_epoch, b.best_val_accuracy)
    assert a.best_state.keys() == b.best_state.keys()
    assert all(torch.equal(a.best_state[k], b.best_state[k]) for k in a.best_state)


@pytest.mark.parametrize("make_model", [small_model, DropoutCNN], ids=["small_cnn", "dropout"])
@pytest.mark.parametrize("stop_after", [1, 2, 3])
def test_resuming_from_a_saved_checkpoint_gives_the_uninterrupted_result(tmp_path, make_model, stop_after):
    data = tiny_data()
    settings = TrainSettings(
        epochs=3, batch_size=16, lr=1e-2, weight_decay=1e-5, ordering_seed=3, copies=1, eval_batch_size=64
    )
    states = []
    full = train_model(make_model(), data, settings, build_augmentation("affine"), seed=4, on_checkpoint=states.append)
    assert [state.epochs_done for state in states] == [1, 2, 3]
    # Written to disk and read back, as a killed run's successor would.
    path = tmp_path / "checkpoint.safetensors"
    save_train_state(path, states[stop_after - 1], {"model_id": "m"})
    states.clear()
    torch.manual_seed(12345)  # whatever the process did before must not matter
    resumed = train_model(
        make_model(),
        data,
        settings,
        build_augmentation("affine"),
        seed=4,
        resume=load_train_state(path, {"model_id": "m"}),
        on_checkpoint=states.append,
    )
    assert [state.epochs_done for state in states] == list(range(stop_after + 1, 4))
    _same_result(full, resumed)


def test_checkpoint_of_another_model_or_not_a_checkpoint_is_refused(tmp_path):
    data = tiny_data()
    states = []
    train_model(small_model(), data, SETTINGS, None, seed=0, on_checkpoint=states.append)
    path = tmp_path / "checkpoint.safetensors"
    save_train_state(path, states[0], {"model_id": "a"})
    with pytest.raises(ValueError, match="expected {'model_id': 'b'}"):
        load_train_state(path, {"model_id": "b"})
    from augcam.atomic import write_tensors

    write_tensors(path, {"x": torch.zeros(1)})
    with pytest.raises(ValueError, match="not an augcam training checkpoint"):
        load_train_state(path, {"model_id": "a"})


def test_training_does_not_depend_on_or_change_the_callers_random_stream():
    data = tiny_data()
    first, second = DropoutCNN(), DropoutCNN()
    torch.manual_seed(1)
    a = train_model(first, data, SETTINGS, None, seed=0)
    after = torch.rand(3)
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(99)
    b = train_model(second, data, SETTINGS, None, seed=0)
    _same_result(a, b)
    assert torch.equal(after, expected), "train_model restores the caller's global RNG state"


def test_nan_loss_raises_training_diverged():
    data = tiny_data()
    nan_data = TrainingData(
        data.train_images * float("nan"), data.train_labels, data.val_images, data.val_labels, data.mean, data.std
    )
    with pytest.raises(TrainingDiverged, match="training loss became nan in epoch 1"):
        train_model(small_model(), nan_data, SETTINGS, None, seed=0)


# --- steps per epoch and mixed-sample targets ------------------------------------------------------


def test_steps_per_epoch_visits_that_many_batches_and_one_pass_equals_the_default():
    from augcam.training import epoch_positions

    # Exactly one pass: the same positions as without the setting.
    assert torch.equal(epoch_positions(10, 2, 5, 0, 3, 10), epoch_order(10, 2, 5, 0))
    # 100 sources, no copies, 10 steps of 110: 11 passes in their own orders, each complete.
    positions = epoch_positions(100, 0, 5, 0, 10, 110)
    assert len(positions) == 1100
    assert torch.bincount(positions, minlength=100).tolist() == [11] * 100
    assert not torch.equal(positions[:100], positions[100:200])
    assert torch.equal(positions, epoch_positions(100, 0, 5, 0, 10, 110))
    assert not torch.equal(positions, epoch_positions(100, 0, 5, 1, 10, 110))
    # The loop takes exactly steps · epochs optimiser steps, whatever the set's size.
    from dataclasses import replace

    batches = []
    settings = replace(SETTINGS, steps_per_epoch=3, copies=0)
    train_model(small_model(), tiny_data(), settings, None, seed=0, on_batch=batches.append)
    assert batches == [16] * 6


class SpyModel(torch.nn.Module):
    """small_cnn that records the inputs of each training forward pass."""

    def __init__(self):
        super().__init__()
        self.inner = small_model()
        self.inputs = []

    def forward(self, x):
        if self.training:
            self.inputs.append(x.detach().clone())
        return self.inner(x)


@pytest.mark.parametrize("label_mixing", [True, False])
def test_mixing_augmentation_trains_on_its_targets(monkeypatch, label_mixing):
    """The loss of a mixing augmentation's batch is cross-entropy against the targets that
    `augment_batch` gives for the batch's copies (one-hot for the originals), recomputed here."""
    import torch.nn.functional as F

    from augcam.augment.mixing import augment_batch
    from augcam.training import augmentation_generator, epoch_positions, prepare_inputs

    data = tiny_data()
    aug = build_augmentation("mixup", {"label_mixing": label_mixing})
    seen = []
    original = F.cross_entropy

    def recording_cross_entropy(logits, target, *args, **kwargs):
        seen.append(target.detach().clone())
        return original(logits, target, *args, **kwargs)

    monkeypatch.setattr("augcam.training.loop.F.cross_entropy", recording_cross_entropy)
    model = SpyModel()
    settings = TrainSettings(
        epochs=1, batch_size=16, lr=1e-3, weight_decay=0.0, ordering_seed=3, copies=1, eval_batch_size=64
    )
    train_model(model, data, settings, aug, seed=7)
    monkeypatch.setattr("augcam.training.loop.F.cross_entropy", original)
    order = epoch_positions(40, 1, 3, 0, None, 16)
    mean, std = torch.tensor([0.5]).view(1, -1, 1, 1), torch.tensor([0.25]).view(1, -1, 1, 1)
    training_targets = [t for t in seen if t.dim() == 2]  # evaluation calls use integer labels
    assert len(training_targets) == 5
    for batch, start in enumerate(range(0, 80, 16)):
        positions = order[start : start + 16]
        is_copy = positions >= 40
        images = data.train_images[positions % 40].clone()
        labels = data.train_labels[positions % 40]
        expected = F.one_hot(labels, 4).float()
        images[is_copy], expected[is_copy] = augment_batch(
            aug, images[is_copy], labels[is_copy], 4, augmentation_generator(7, 0, batch)
        )
        torch.testing.assert_close(training_targets[batch], expected, rtol=0, atol=0)
        torch.testing.assert_close(model.inputs[batch], prepare_inputs(images, mean, std, None), rtol=0, atol=0)
        rows = training_targets[batch]
        torch.testing.assert_close(rows.sum(1), torch.ones(16))
        if label_mixing:
            assert ((rows[is_copy] > 0) & (rows[is_copy] < 1)).any(), "Mixup with label mixing gives soft rows"
        else:
            assert set(rows.unique().tolist()) <= {0.0, 1.0}


def test_non_mixing_augmentations_keep_integer_labels(monkeypatch):
    import torch.nn.functional as F

    seen = []
    original = F.cross_entropy
    monkeypatch.setattr(
        "augcam.training.loop.F.cross_entropy",
        lambda logits, target, *a, **k: seen.append(target.dtype) or original(logits, target, *a, **k),
    )
    train_model(small_model(), tiny_data(), SETTINGS, build_augmentation("cutmix"), seed=0)
    assert seen and set(seen) == {torch.int64}


# --- base augmentations (training.base_augmentations) ---------------------------------------------


def _mirrored(images, raw):
    """Which rows of `images` differ from `raw` (the flipped ones, for a flip)."""
    return (images != raw).flatten(1).any(1)


def test_base_augmentation_applies_to_every_model_alike_and_before_the_models_own(monkeypatch):
    import augcam.training.loop as loop

    data = tiny_data()
    flip = build_augmentation("horizontal_flip")
    settings = dataclasses.replace(SETTINGS, base_augmentations=(flip,))
    # The study's augmentation receives base-augmented copies, the same ones whatever it is and
    # whatever its seed: the base augmentation's randomness is the data order's, not the model's.
    recorders = [Recorder(build_augmentation(name)) for name in ("affine", "gaussian_blur", "affine")]
    for recorder, seed in zip(recorders, (7, 7, 8)):
        train_model(small_model(), data, settings, recorder, seed=seed)
    plain = Recorder(build_augmentation("affine"))
    train_model(small_model(), data, SETTINGS, plain, seed=7)
    for (images, _), (other, _), (third, _), (raw, _) in zip(*(r.calls for r in recorders), plain.calls):
        assert torch.equal(images, other) and torch.equal(images, third)
        # Each copy is its source image or that image's mirror, and the flip is drawn per image.
        mirrored = _mirrored(images, raw)
        assert torch.equal(images[mirrored], raw[mirrored].flip(-1))
    flipped = torch.cat([_mirrored(images, raw) for (images, _), (raw, _) in zip(recorders[0].calls, plain.calls)])
    assert 0.3 < flipped.float().mean() < 0.7

    # The baseline's images are base-augmented too; validation images are not.
    def model_inputs(settings):
        seen, original = [], loop.prepare_inputs
        with monkeypatch.context() as patch:
            patch.setattr(
                loop, "prepare_inputs", lambda images, *a: seen.append(images.clone()) or original(images, *a)
            )
            train_model(small_model(), data, settings, None, seed=0)
        return seen  # per epoch: 3 training batches (16, 16, 8 images), then the validation batch

    with_base, without = model_inputs(settings), model_inputs(SETTINGS)
    assert len(with_base) == len(without) == 8
    for index, (base, raw) in enumerate(zip(with_base, without)):
        mirrored = _mirrored(base, raw)
        assert torch.equal(base[mirrored], raw[mirrored].flip(-1))
        if index % 4 == 3:
            assert not mirrored.any(), "validation images are not augmented"
    flipped = torch.cat(
        [_mirrored(base, raw) for index, (base, raw) in enumerate(zip(with_base, without)) if index % 4 != 3]
    )
    assert len(flipped) == 80 and 0.3 < flipped.float().mean() < 0.7


def test_an_empty_base_list_is_the_default_loop_and_a_base_augmentation_changes_the_weights():
    data = tiny_data()
    result = train_model(small_model(), data, SETTINGS, build_augmentation("affine"), seed=0)
    empty = train_model(
        small_model(), data, dataclasses.replace(SETTINGS, base_augmentations=()), build_augmentation("affine"), seed=0
    )
    flipped = train_model(
        small_model(),
        data,
        dataclasses.replace(SETTINGS, base_augmentations=(build_augmentation("horizontal_flip"),)),
        build_augmentation("affine"),
        seed=0,
    )
    assert all(torch.equal(result.best_state[k], empty.best_state[k]) for k in result.best_state)
    assert not all(torch.equal(result.best_state[k], flipped.best_state[k]) for k in result.best_state)
