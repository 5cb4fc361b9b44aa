"""The images one training batch feeds the model: the one code path of the training loop and of the
augmentation gallery (`augcam.pipeline.gallery`), so that what the gallery shows is what a model
was trained on.

- A batch reads the positions `order[start:start + batch_size]` of the epoch's visiting order
  (`augcam.training.ordering.epoch_positions`); position p reads source image p % N, and
  positions p ≥ N are augmented copies.
- Copies drawn per epoch (the default): the model's augmentation runs on the batch's copy rows,
  whole, with the random stream of (seed, epoch, batch), after the base augmentations.
- Copies drawn once (`copies_drawn: once`): `fixed_copies` makes every copy of the training set
  before the first epoch, batched (chunks of `batch_size` copies in position order, each with the
  stream of (seed, chunk)), and a batch reads its copies from that set; the base augmentations then
  run on the whole batch, as an online augmentation runs on a fixed dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from augcam.augment.mixing import MixingAugmentation, augment_batch
from augcam.training.ordering import augmentation_generator, base_augment, fixed_copies_generator

if TYPE_CHECKING:
    from augcam.augment import Augmentation


def uses_targets(augmentation: Augmentation | None) -> bool:
    """Whether training with `augmentation` uses probability targets (a mixing augmentation, see
    `augcam.augment.mixing`) instead of the integer labels."""
    return isinstance(augmentation, MixingAugmentation)


@dataclass(frozen=True)
class FixedCopies:
    """Every augmented copy of a training set, made once: row r is position N + r, i.e. copy
    1 + r // N of source image r % N."""

    images: torch.Tensor  # (copies·N, C, H, W), on the training data's device
    targets: torch.Tensor | None  # (copies·N, classes) probability targets of a mixing augmentation


def fixed_copies(
    images: torch.Tensor,
    labels: torch.Tensor,
    augmentation: Augmentation,
    copies: int,
    seed: int,
    chunk_size: int,
    num_classes: int,
) -> FixedCopies:
    """The `copies` augmented copies of every image of `images` (N, C, H, W), made on whole chunks
    of `chunk_size` rows (the fast batched path), chunk c drawing from `fixed_copies_generator(seed,
    c)`: the same set for a seed every time, another for another seed. A mixing augmentation's
    partners are drawn within the chunk, as within a batch's copies when copies are redrawn."""
    num_sources = len(images)
    mixes_labels = uses_targets(augmentation)
    out_images = torch.empty((copies * num_sources, *images.shape[1:]), dtype=images.dtype, device=images.device)
    out_targets = (
        torch.empty((copies * num_sources, num_classes), dtype=images.dtype, device=images.device)
        if mixes_labels
        else None
    )
    for chunk, start in enumerate(range(0, copies * num_sources, chunk_size)):
        rows = torch.arange(start, min(start + chunk_size, copies * num_sources), device=images.device)
        sources = rows % num_sources
        generator = fixed_copies_generator(seed, chunk)
        if mixes_labels:
            out_images[rows], out_targets[rows] = augment_batch(  # type: ignore[index]
                augmentation, images[sources], labels[sources], num_classes, generator
            )
        else:
            out_images[rows] = augmentation(images[sources], generator)
    return FixedCopies(out_images, out_targets)


@dataclass(frozen=True)
class BatchMaker:
    """What the images of a model's batches depend on besides the positions: its training images and
    labels (on the device), its augmentation and seed, and the study's settings."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    augmentation: Augmentation | None
    seed: int
    copies: int  # 0 for a model without augmentation
    num_classes: int
    ordering_seed: int
    base_augmentations: tuple[Augmentation, ...] = ()
    fixed: FixedCopies | None = None  # copies drawn once; None: redrawn every epoch

    def batch(
        self, order_cpu: torch.Tensor, order: torch.Tensor, start: int, stop: int, epoch: int, batch: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(sources, images in [0, 1], integer labels, probability targets or None) of the batch that
        reads `order[start:stop]` as batch `batch` of `epoch` (0-based). `order_cpu` is the same
        order on the CPU: which rows are copies is read from it, since testing it on the device
        would make every batch wait for the GPU."""
        num_sources = len(self.train_images)
        positions = order[start:stop]
        sources = positions % num_sources
        images = self.train_images[sources]
        labels = self.train_labels[sources]
        targets = None  # probability targets, only for a mixing augmentation
        copy_rows = (
            torch.nonzero(order_cpu[start:stop] >= num_sources).squeeze(1) if self.copies else torch.zeros(0, dtype=int)
        )
        if self.fixed is not None:
            if len(copy_rows):
                rows = copy_rows.to(images.device)
                copied = positions[rows] - num_sources
                images = images.clone()
                images[rows] = self.fixed.images[copied]
                if self.fixed.targets is not None:
                    targets = F.one_hot(labels, self.num_classes).to(images.dtype)
                    targets[rows] = self.fixed.targets[copied]
            if self.base_augmentations:
                images = base_augment(images, self.base_augmentations, self.ordering_seed, epoch, batch)
            return sources, images, labels, targets
        if self.base_augmentations:
            images = base_augment(images, self.base_augmentations, self.ordering_seed, epoch, batch)
        if len(copy_rows):
            generator = augmentation_generator(self.seed, epoch, batch)
            rows = copy_rows.to(images.device)
            images = images.clone()
            if uses_targets(self.augmentation):
                # Partners are drawn among the batch's copies; originals keep one-hot targets.
                targets = F.one_hot(labels, self.num_classes).to(images.dtype)
                images[rows], targets[rows] = augment_batch(
                    self.augmentation, images[rows], labels[rows], self.num_classes, generator
                )
            else:
                images[rows] = self.augmentation(images[rows], generator)  # type: ignore[misc]
        return sources, images, labels, targets


def batch_maker(
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    augmentation: Augmentation | None,
    seed: int,
    *,
    copies: int,
    copies_drawn: str,
    batch_size: int,
    num_classes: int,
    ordering_seed: int,
    base_augmentations: tuple[Augmentation, ...] = (),
) -> BatchMaker:
    """The `BatchMaker` of a model; with `copies_drawn` "once" it makes the fixed copies now."""
    copies = copies if augmentation is not None else 0
    fixed = None
    if copies and copies_drawn == "once":
        fixed = fixed_copies(train_images, train_labels, augmentation, copies, seed, batch_size, num_classes)  # type: ignore[arg-type]
    return BatchMaker(
        train_images, train_labels, augmentation, seed, copies, num_classes, ordering_seed, base_augmentations, fixed
    )
