"""The published protocols, when asked for: `training.order` (one visiting order for every epoch,
the thesis's Appendix B) and `training.copies_drawn` (augmented copies made once and fixed, Tang
et al.'s 1,100-image sets), checked on the training loop, and the model ids they leave alone."""

import dataclasses

import pytest
import torch

import augcam.training.batches as batches
from augcam.augment import build_augmentation
from augcam.config import load_config
from augcam.errors import ConfigError
from augcam.models import build_model
from augcam.pipeline.plan import model_key, plan
from augcam.training import TrainingData, TrainSettings, epoch_positions, fixed_copies, train_model

N = 40


def tiny_data(n=N):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 1, 12, 12, generator=g)
    labels = torch.arange(n) % 4
    return TrainingData(images, labels, images[:8], labels[:8], (0.5,), (0.25,))


SETTINGS = TrainSettings(
    epochs=3, batch_size=16, lr=1e-3, weight_decay=1e-5, ordering_seed=3, copies=1, eval_batch_size=64
)


def small_model():
    return build_model("small_cnn", 1, 4, init_seed=0)


def fed(monkeypatch, settings, augmentation, seed):
    """Per epoch: {position: (source, image fed to the model)} for every position the loop visited,
    recorded from the one function that makes a batch's images."""
    epochs: list[dict[int, tuple[int, torch.Tensor, torch.Tensor | None]]] = []
    original = batches.BatchMaker.batch

    def recording(self, order_cpu, order, start, stop, epoch, batch):
        sources, images, labels, targets = original(self, order_cpu, order, start, stop, epoch, batch)
        while len(epochs) <= epoch:
            epochs.append({})
        rows = targets if targets is not None else [None] * len(images)
        for position, source, image, target in zip(order_cpu[start:stop].tolist(), sources.tolist(), images, rows):
            epochs[epoch][position] = (source, image.clone(), None if target is None else target.clone())
        return sources, images, labels, targets

    with monkeypatch.context() as patch:
        patch.setattr(batches.BatchMaker, "batch", recording)
        train_model(small_model(), tiny_data(), settings, augmentation, seed=seed)
    return epochs


def visiting_orders(monkeypatch, settings, augmentation, seed):
    """Per epoch, the sources in the order the loop read them."""
    orders: list[list[int]] = []
    original = batches.BatchMaker.batch

    def recording(self, order_cpu, order, start, stop, epoch, batch):
        result = original(self, order_cpu, order, start, stop, epoch, batch)
        while len(orders) <= epoch:
            orders.append([])
        orders[epoch] += result[0].tolist()
        return result

    with monkeypatch.context() as patch:
        patch.setattr(batches.BatchMaker, "batch", recording)
        train_model(small_model(), tiny_data(), settings, augmentation, seed=seed)
    return orders


# --- training.order ------------------------------------------------------------------------------


def test_order_once_keeps_epoch_zeros_order_and_per_epoch_draws_a_new_one():
    for steps in (None, 7):  # also with steps_per_epoch (several passes per epoch)
        once = [epoch_positions(N, 2, 3, e, steps, 16, "once") for e in range(3)]
        per_epoch = [epoch_positions(N, 2, 3, e, steps, 16) for e in range(3)]
        assert all(torch.equal(once[0], o) for o in once[1:])
        assert not torch.equal(per_epoch[0], per_epoch[1]) and not torch.equal(per_epoch[1], per_epoch[2])
        assert torch.equal(once[0], per_epoch[0]), "the first epoch is the same under both orders"
    assert sorted(epoch_positions(N, 2, 3, 5, None, 16, "once").tolist()) == list(range(3 * N))
    with pytest.raises(ValueError, match="order must be one of"):
        epoch_positions(N, 1, 3, 0, None, 16, "twice")


@pytest.mark.parametrize("order", ["per_epoch", "once"])
def test_models_of_a_study_read_the_same_sources_in_the_loop(monkeypatch, order):
    settings = dataclasses.replace(SETTINGS, order=order, copies_drawn="once")
    runs = [
        visiting_orders(monkeypatch, settings, build_augmentation(name), seed)
        for name, seed in (("affine", 0), ("cutmix", 0), ("gaussian_blur", 1))
    ]
    assert all(run == runs[0] for run in runs[1:]), "position p reads the same source in every model"
    epochs = runs[0]
    assert len(epochs) == 3 and all(sorted(e) == sorted(list(range(N)) * 2) for e in epochs)
    if order == "once":
        assert epochs[0] == epochs[1] == epochs[2]
    else:
        assert epochs[0] != epochs[1] and epochs[1] != epochs[2]


# --- training.copies_drawn -----------------------------------------------------------------------


def _copies(epoch: dict[int, tuple[int, torch.Tensor, torch.Tensor | None]]) -> dict[int, torch.Tensor]:
    return {position: image for position, (_, image, _) in epoch.items() if position >= N}


@pytest.mark.parametrize("name", ["affine", "cutmix_targets"])  # cutmix_targets: a mixing augmentation
def test_fixed_copies_are_the_same_every_epoch_and_differ_across_seeds(monkeypatch, name):
    aug = build_augmentation(name, {"label_mixing": True} if name == "cutmix_targets" else {})
    once = dataclasses.replace(SETTINGS, copies_drawn="once")
    seed0, seed1 = fed(monkeypatch, once, aug, 0), fed(monkeypatch, once, aug, 1)
    for epoch in seed0[1:]:
        assert all(torch.equal(_copies(seed0[0])[p], image) for p, image in _copies(epoch).items())
    differs = [not torch.equal(_copies(seed0[0])[p], _copies(seed1[0])[p]) for p in range(N, 2 * N)]
    assert sum(differs) > N // 2, "another seed draws another fixed set"
    # The originals are the source images themselves, under both settings.
    data = tiny_data()
    assert all(torch.equal(image, data.train_images[p]) for p, (_, image, _) in seed0[0].items() if p < N)
    if name == "cutmix_targets":  # a mixing augmentation's fixed copies keep their mixed targets too
        for epoch in seed0[1:]:
            assert all(torch.equal(seed0[0][p][2], epoch[p][2]) for p in range(N, 2 * N) if p in epoch)
        assert any(((seed0[0][p][2] > 0) & (seed0[0][p][2] < 1)).any() for p in range(N, 2 * N) if p in seed0[0])


def test_copies_drawn_per_epoch_differ_from_epoch_to_epoch(monkeypatch):
    epochs = fed(monkeypatch, SETTINGS, build_augmentation("affine"), 0)
    differs = [not torch.equal(_copies(epochs[0])[p], _copies(epochs[1])[p]) for p in range(N, 2 * N)]
    assert sum(differs) > N // 2


class Recorder:
    def __init__(self, inner):
        self.inner, self.sizes = inner, []

    def __call__(self, images, generator):
        self.sizes.append(len(images))
        return self.inner(images, generator)


def test_fixed_copies_are_made_once_on_whole_batches():
    aug = Recorder(build_augmentation("affine"))
    train_model(small_model(), tiny_data(), dataclasses.replace(SETTINGS, copies=2, copies_drawn="once"), aug, seed=0)
    assert aug.sizes == [16, 16, 16, 16, 16], "2·40 copies in chunks of the batch size, before the first epoch"
    redrawn = Recorder(build_augmentation("affine"))
    train_model(small_model(), tiny_data(), SETTINGS, redrawn, seed=0)
    assert len(redrawn.sizes) == 3 * 5, "redrawn: in every batch of every epoch"
    data = tiny_data()
    made = fixed_copies(data.train_images, data.train_labels, build_augmentation("affine"), 2, 0, 16, 4)
    again = fixed_copies(data.train_images, data.train_labels, build_augmentation("affine"), 2, 0, 16, 4)
    assert made.images.shape == (80, 1, 12, 12) and made.targets is None
    assert torch.equal(made.images, again.images)


def test_the_settings_change_the_weights_and_resume_alike(tmp_path):
    data, aug = tiny_data(), build_augmentation("affine")
    results = {
        (order, drawn): train_model(
            small_model(), data, dataclasses.replace(SETTINGS, order=order, copies_drawn=drawn), aug, seed=0
        )
        for order in ("per_epoch", "once")
        for drawn in ("per_epoch", "once")
    }
    sums = {torch.cat([v.double().flatten() for v in r.best_state.values()]).sum().item() for r in results.values()}
    assert len(sums) == 4, "each combination trains other weights"
    # Stopping after epoch 1 and resuming gives the uninterrupted result with fixed copies too.
    settings = dataclasses.replace(SETTINGS, order="once", copies_drawn="once")
    saved = []
    train_model(small_model(), data, dataclasses.replace(settings, epochs=1), aug, seed=0, on_checkpoint=saved.append)
    resumed = train_model(small_model(), data, settings, aug, seed=0, resume=saved[-1])
    full = results[("once", "once")]
    assert all(torch.equal(full.best_state[k], resumed.best_state[k]) for k in full.best_state)


# --- config and model ids ------------------------------------------------------------------------


def test_defaults_leave_every_model_id_as_it_was_and_once_changes_the_right_ones():
    # Ids of these presets' first models before the two settings existed (same data fingerprint).
    before = {
        "quick": ["baseline-8dc6347ea072", "affine-s0-067b6c69413b", "affine-s1-dd6d29aeb064"],
        "tang-mnist": ["baseline-2fca9e4a4621"],
    }
    for preset, ids in before.items():
        config = load_config(preset, overrides={"training.copies_drawn": "per_epoch"})
        assert [r.model_id for r in plan(config, "fingerprint")][: len(ids)] == ids
    quick = plan(load_config("quick"), "fingerprint")
    fixed = plan(load_config("quick", overrides={"training.copies_drawn": "once"}), "fingerprint")
    assert fixed[0].model_id == quick[0].model_id, "the baseline has no copies: the same model"
    assert all(a.model_id != b.model_id for a, b in zip(quick[1:], fixed[1:]))
    once = plan(load_config("quick", overrides={"training.order": "once"}), "fingerprint")
    assert all(a.model_id != b.model_id for a, b in zip(quick, once)), "the order changes every model"
    config = load_config("quick", overrides={"training.order": "once", "training.copies_drawn": "once"})
    key = model_key(config, "fingerprint", config.augmentations[0], 0)
    assert key["training"]["order"] == "once" and key["augmentation"]["copies_drawn"] == "once"
    default = load_config("quick")
    default_key = model_key(default, "fingerprint", default.augmentations[0], 0)
    assert "order" not in default_key["training"] and "copies_drawn" not in default_key["augmentation"]


def test_presets_and_bad_values():
    assert load_config("tang-mnist").training.copies_drawn == "once"
    assert load_config("thesis-cifar10").training.order == "once"
    assert load_config("quick").training.order == "per_epoch"
    with pytest.raises(ConfigError, match=r"training\.order"):
        load_config("quick", overrides={"training.order": "sometimes"})
    with pytest.raises(ConfigError, match=r"training\.copies_drawn"):
        load_config("quick", overrides={"training.copies_drawn": "twice"})
