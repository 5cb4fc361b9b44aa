"""The augmentation gallery's figure (`augcam.pipeline.gallery`): one row per studied augmentation and
seed, one column per training image, the images as the training loop fed them to the models."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from augcam.pipeline.gallery import AugmentationGallery

__all__ = ["gallery_figure", "gallery_png"]


def gallery_figure(gallery: AugmentationGallery) -> Figure:
    """A grid of the gallery's images: the originals on top, then each (augmentation, seed); a copy
    the chosen epoch does not visit is a blank panel saying so."""
    rows, columns = gallery.images.shape[:2]
    panel = 1.1  # inches
    fig = Figure(figsize=(1.8 + columns * panel, 0.5 + rows * panel), layout="constrained")
    axes = np.atleast_2d(fig.subplots(rows, columns, squeeze=False))
    for r in range(rows):
        for c in range(columns):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            image = gallery.images[r, c]
            if bool(image.isnan().any()):
                ax.text(0.5, 0.5, "not visited\nthis epoch", ha="center", va="center", fontsize=7)
            else:
                picture = image.clamp(0, 1).permute(1, 2, 0).numpy()
                if picture.shape[-1] == 1:
                    ax.imshow(picture[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                else:
                    ax.imshow(picture, interpolation="nearest")
            if r == 0:
                label = gallery.labels[c]
                name = gallery.classes[label] if 0 <= label < len(gallery.classes) else str(label)
                ax.set_title(f"#{gallery.sources[c]}: {name}", fontsize=7)
            if c == 0:
                ax.set_ylabel(gallery.rows[r], fontsize=8, rotation=0, ha="right", va="center")
    drawn = "drawn once, the same every epoch" if gallery.copies_drawn == "once" else "redrawn every epoch"
    fig.suptitle(f"What the models were trained on: epoch {gallery.epoch}, copies {drawn}", fontsize=9)
    return fig


def gallery_png(gallery: AugmentationGallery, dpi: int = 150) -> bytes:
    """The gallery's figure as PNG bytes."""
    buffer = io.BytesIO()
    gallery_figure(gallery).savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
