"""The methodology's controls, checked on the training loop itself."""

import torch

from augcam.augment import build_augmentation
from augcam.models import build_model
from augcam.train import (TrainingData, TrainSettings, augmentation_generator, epoch_order, state_digest,
                          train_model)


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


SETTINGS = TrainSettings(epochs=2, batch_size=16, lr=1e-3, weight_decay=1e-5, ordering_seed=3, copies=1,
                         eval_batch_size=64)


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
