"""Where a model's training data and randomness come from: the rules that make models comparable.

- Every seed is derived from named integers (`derived_seed`), so it is stable across runs,
  machines and Python versions, and two models that should share a stream get the same one.
- The augmented training set is the original set followed by `copies` augmented copies of each
  image. Each epoch visits the (1 + copies)·N positions in an order drawn from
  (ordering_seed, epoch) alone, so position p reads the same source image in every model of the
  study, whatever its augmentation.
- The augmentation's randomness for a batch comes from (seed, epoch, batch): two augmentations
  trained with the same seed draw from the same random stream. Copies drawn once (`copies_drawn:
  once`) come from (seed, chunk) instead, so they do not change from epoch to epoch. The base
  augmentations' comes from (ordering seed, epoch, batch), so they are shared like the data order.
- `order: once` visits the positions in epoch 0's order every epoch (the thesis's Appendix B).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from augcam.augment import Augmentation


def derived_seed(*parts: int | str) -> int:
    """A 63-bit seed from several integers/strings; stable across runs, machines and Python versions."""
    text = "/".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1


def epoch_order(num_sources: int, copies: int, ordering_seed: int, epoch: int) -> torch.Tensor:
    """Positions of the augmented training set in visiting order for `epoch`.

    Position j reads source image j % num_sources; j // num_sources is 0 for the original and
    1..copies for the augmented copies. The order depends on the ordering seed and the epoch only.
    """
    generator = torch.Generator().manual_seed(derived_seed("order", ordering_seed, epoch))
    return torch.randperm(num_sources * (1 + copies), generator=generator)


ORDERS = ("per_epoch", "once")  # training.order: a new visiting order every epoch, or one for all


def epoch_positions(
    num_sources: int,
    copies: int,
    ordering_seed: int,
    epoch: int,
    steps_per_epoch: int | None,
    batch_size: int,
    order: str = "per_epoch",
) -> torch.Tensor:
    """The positions visited in `epoch`: `epoch_order` alone, or, with `steps_per_epoch`, the first
    steps·batch_size positions of successive passes (pass 0 is `epoch_order` itself, so an epoch of
    exactly one pass is the same with or without the setting). With `order` "once" every epoch
    visits the positions of epoch 0 (the thesis's dataset shuffled once and read in that order), so
    the first epoch is the same under both orders."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    if order == "once":
        epoch = 0
    first = epoch_order(num_sources, copies, ordering_seed, epoch)
    if steps_per_epoch is None:
        return first
    wanted = steps_per_epoch * batch_size
    passes = [first]
    while sum(len(p) for p in passes) < wanted:
        generator = torch.Generator().manual_seed(derived_seed("order", ordering_seed, epoch, len(passes)))
        passes.append(torch.randperm(len(first), generator=generator))
    return torch.cat(passes)[:wanted]


def augmentation_generator(seed: int, epoch: int, batch: int) -> torch.Generator:
    return torch.Generator().manual_seed(derived_seed("augment", seed, epoch, batch))


def fixed_copies_generator(seed: int, chunk: int) -> torch.Generator:
    """The stream of chunk `chunk` of a model's fixed copies (`copies_drawn: once`), from its seed:
    no epoch in it, so the copies are the same every epoch."""
    return torch.Generator().manual_seed(derived_seed("fixed-copies", seed, chunk))


def guided_generator(seed: int, epoch: int, batch: int) -> torch.Generator:
    """The guided loss's randomness for a batch (actdiff's shuffles), from (seed, epoch, batch)."""
    return torch.Generator().manual_seed(derived_seed("guided", seed, epoch, batch))


def base_augment(
    images: torch.Tensor, augmentations: tuple[Augmentation, ...], ordering_seed: int, epoch: int, batch: int
) -> torch.Tensor:
    """`images` (a training batch, originals and copies) through the base augmentations in turn.

    The randomness comes from (ordering seed, epoch, batch) and not from the model's seed: the
    models that visit the same batches (every model with the same `copies`, whatever its
    augmentation and seed) see the same base-augmented images, so the base augmentation is shared
    like the data order and only the model's own augmentation differs."""
    generator = torch.Generator().manual_seed(derived_seed("base-augment", ordering_seed, epoch, batch))
    for augmentation in augmentations:
        images = augmentation(images, generator)
    return images
