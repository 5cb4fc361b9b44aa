"""The augmentation gallery shows what the training loop fed the models: for each chosen training
image, the very copy of it the loop made in that epoch (same code, same random stream)."""

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import augcam
import augcam.training.batches as batches
from augcam.cli import app
from augcam.errors import ConfigError
from augcam.pipeline.chain import train_one_model
from augcam.pipeline.gallery import gallery_sources

STUDY = {
    "name": "gallery",
    "data": {"dataset": "fashion-mnist", "train_size": 64, "val_size": 20, "test_size": 20},
    "model": {"name": "small_cnn"},
    "training": {"epochs": 2, "batch_size": 16},
    "augmentations": ["affine", "cutmix_targets", "gaussian_blur"],
    "seeds": [0, 1],
    "controls": {"null_models": 2, "baseline_replicas": 0, "sanity_images": 0},
}


def fed_in_epoch(monkeypatch, prepared, run, epoch):
    """{position: image} of every position the training loop read in `epoch` (0-based) while
    training `run` for real (train_one_model, the chain's training step)."""
    seen = {}
    original = batches.BatchMaker.batch

    def recording(self, order_cpu, order, start, stop, e, batch):
        result = original(self, order_cpu, order, start, stop, e, batch)
        if e == epoch:
            for position, image in zip(order_cpu[start:stop].tolist(), result[1]):
                seen.setdefault(position, image.clone())
        return result

    with monkeypatch.context() as patch:
        patch.setattr(batches.BatchMaker, "batch", recording)
        train_one_model(prepared, run, torch.device("cpu"))
    return seen


@pytest.mark.parametrize(
    "training",
    [
        {},  # copies redrawn every epoch, a new order every epoch
        {"order": "once", "copies_drawn": "once", "base_augmentations": ["horizontal_flip"]},
    ],
    ids=["per_epoch", "once_with_base"],
)
def test_gallery_images_are_what_the_training_loop_fed_the_model(monkeypatch, fashion_mnist_available, training):
    study = {**STUDY, "training": {**STUDY["training"], **training}}
    prepared = augcam.prepare(study)
    gallery = augcam.augmentation_gallery(study, images=3, epoch=2, prepared=prepared)
    studied = [(a, s) for a in ("affine", "cutmix_targets", "gaussian_blur") for s in (0, 1)]
    assert gallery.rows == ["original"] + [f"{a} seed {s}" for a, s in studied], "no null model in the gallery"
    n = len(prepared.split.train)
    assert torch.equal(gallery.images[0], prepared.train_set.images[prepared.split.train][gallery.sources] / 255)
    for run in prepared.runs:
        if run.augmentation in ("cutmix_targets", "gaussian_blur") and run.seed == 1:
            fed = fed_in_epoch(monkeypatch, prepared, run, epoch=1)
            row = gallery.rows.index(f"{run.augmentation} seed {run.seed}")
            for column, source in enumerate(gallery.sources):
                assert torch.equal(gallery.images[row, column], fed[n + source]), (run.augmentation, source)
            # Another seed's copy of the same image is another image.
            other = gallery.rows.index(f"{run.augmentation} seed 0")
            assert not torch.equal(gallery.images[row], gallery.images[other])


def test_gallery_sources_take_one_image_per_class_first():
    labels = torch.tensor([2, 0, 0, 1, 2, 1])
    assert gallery_sources(labels, 4) == [1, 3, 0, 2]
    assert gallery_sources(labels, 10) == [1, 3, 0, 2, 5, 4]
    with pytest.raises(ConfigError, match="at least 1"):
        gallery_sources(labels, 0)


def test_cli_writes_the_gallery_png_and_refuses_a_bad_epoch(tmp_path, fashion_mnist_available):
    study = tmp_path / "study.yaml"
    import yaml

    study.write_text(yaml.safe_dump({**STUDY, "augmentations": ["affine"], "seeds": [0]}))
    result = CliRunner().invoke(app, ["gallery", str(study), "--out", str(tmp_path / "g"), "--images", "2"])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "g" / "gallery.png") as png:
        assert png.size[0] > 100 and png.size[1] > 100
    with pytest.raises(ConfigError, match="epoch must be between 1 and training.epochs"):
        augcam.augmentation_gallery(str(study), epoch=3)
    bad = CliRunner().invoke(app, ["gallery", "no-such-preset", "--out", str(tmp_path / "h")])
    assert bad.exit_code == 2 and not (tmp_path / "h").exists()
