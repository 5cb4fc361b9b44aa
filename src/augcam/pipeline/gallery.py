"""The augmentation gallery: what the models of a study were trained on (the thesis's Figs 2.1–2.8).

Every studied augmentation, under every seed of the study, applied to the same few training images
through the training loop's own code (`augcam.training.batches.BatchMaker.batch`) and random
stream: for each image, the gallery makes the very batch of the chosen epoch that holds the
image's first augmented copy and takes that copy from it. So a gallery image is, bit for bit, the
image the training loop fed the model at that position (before normalisation and resizing), with
the batch's base augmentations and a mixing augmentation's partner included.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from augcam.config import StudyConfig, load_config
from augcam.errors import ConfigError
from augcam.pipeline.chain import train_settings, training_data
from augcam.pipeline.prepare import PreparedStudy, prepare
from augcam.training import batch_maker, epoch_positions

__all__ = ["AugmentationGallery", "augmentation_gallery", "write_gallery", "gallery_sources", "GALLERY_FILE"]

GALLERY_FILE = "gallery.png"
DEFAULT_IMAGES = 4


@dataclass
class AugmentationGallery:
    """Rows of images in [0, 1]: row 0 the chosen training images as loaded, then one row per
    (studied augmentation, seed), each image the copy the training loop fed the model in `epoch`."""

    images: torch.Tensor  # (rows, images, C, H, W) float32 in [0, 1]; NaN where a copy is not visited
    rows: list[str]  # "original", "affine seed 0", ...
    sources: list[int]  # positions of the images in the study's training split
    labels: list[int]
    classes: tuple[str, ...]
    epoch: int  # 1-based
    copies_drawn: str  # "per_epoch" or "once" (training.copies_drawn)


def gallery_sources(labels: torch.Tensor, count: int) -> list[int]:
    """`count` training images, one class after the other (the first image of each class in split
    order, then the second of each, ...), so that a few images show several classes."""
    if count < 1:
        raise ConfigError(f"gallery: the number of images must be at least 1, got {count}")
    by_class = [torch.nonzero(labels == c).squeeze(1).tolist() for c in sorted(set(labels.tolist()))]
    chosen: list[int] = []
    for rank in range(max(len(members) for members in by_class)):
        chosen += [members[rank] for members in by_class if rank < len(members)]
    return chosen[:count]


def augmentation_gallery(
    config: StudyConfig | str | Path | dict,
    images: int = DEFAULT_IMAGES,
    epoch: int = 1,
    *,
    prepared: PreparedStudy | None = None,
) -> AugmentationGallery:
    """The gallery of a study (a preset name, a YAML path, a dict or a StudyConfig): the first
    `images` training images (`gallery_sources`) as each studied augmentation and seed made them in
    `epoch` (1-based). Loads and splits the data as the study does (`prepare`), unless `prepared`
    is given; the control's null models and mask-guided models are not in it."""
    if prepared is None:
        prepared = prepare(config if isinstance(config, StudyConfig) else load_config(config))
    c = prepared.config
    if not 1 <= epoch <= c.training.epochs:
        raise ConfigError(f"gallery: epoch must be between 1 and training.epochs ({c.training.epochs}), got {epoch}")
    data = training_data(prepared, torch.device("cpu"))
    num_sources = len(data.train_images)
    sources = gallery_sources(data.train_labels, images)
    rows, pictures = ["original"], [data.train_images[sources]]
    for run in prepared.runs:
        if run.entry is None or c.is_null_control(run.entry):
            continue
        settings = train_settings(c, run.ordering_seed)
        maker = batch_maker(
            data.train_images,
            data.train_labels,
            run.entry.build(),
            run.seed,  # type: ignore[arg-type]
            copies=settings.copies,
            copies_drawn=settings.copies_drawn,
            batch_size=settings.batch_size,
            num_classes=prepared.num_classes,
            ordering_seed=settings.ordering_seed,
            base_augmentations=settings.base_augmentations,
        )
        order = epoch_positions(
            num_sources,
            settings.copies,
            settings.ordering_seed,
            epoch - 1,
            settings.steps_per_epoch,
            settings.batch_size,
            settings.order,
        )
        row = torch.full_like(pictures[0], float("nan"))
        made: dict[int, torch.Tensor] = {}  # batch → its images, each batch made once
        for column, source in enumerate(sources):
            where = torch.nonzero(order == num_sources + source).squeeze(1)  # its first copy
            if not len(where):
                continue  # not visited in this epoch (steps_per_epoch shorter than a pass)
            index = int(where[0])
            batch, offset = divmod(index, settings.batch_size)
            if batch not in made:
                start = batch * settings.batch_size
                made[batch] = maker.batch(order, order, start, start + settings.batch_size, epoch - 1, batch)[1]
            row[column] = made[batch][offset]
        rows.append(f"{run.augmentation} seed {run.seed}")
        pictures.append(row)
    return AugmentationGallery(
        torch.stack(pictures),
        rows,
        sources,
        [int(label) for label in data.train_labels[sources]],
        tuple(prepared.train_set.classes),
        epoch,
        c.training.copies_drawn,
    )


def write_gallery(
    config: StudyConfig | str | Path | dict, out: str | Path, images: int = DEFAULT_IMAGES, epoch: int = 1
) -> Path:
    """`augmentation_gallery` drawn into `out/gallery.png` (written atomically); returns its path."""
    from augcam.analysis.gallery_figure import gallery_png
    from augcam.atomic import atomic_path

    gallery = augmentation_gallery(config, images, epoch)
    png = gallery_png(gallery)
    path = Path(out) / GALLERY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(png)
    return path
