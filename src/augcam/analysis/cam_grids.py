"""What the extreme-image grids need besides the tables: stored CAMs and the test images.

CAMs come from `cams/<model_id>.safetensors` (raw maps at the layer's resolution), upsampled to
the model's input size with `augcam.cams.upsample`, exactly as the compare stage does. Test
images are loaded the way the study loaded them: the resolved `study.yaml` gives the dataset and
its root, augcam's loader reads it, and `augcam.data.splits.study_split` (the study's own split)
gives the test indices; those must be the `image_index` values of the tables (the position of
each image in the official test set) and their labels must match, otherwise the data on this
machine is not the data the study ran on and no image is drawn from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from augcam.analysis.run_tables import ReportError
from augcam.atomic import DamagedFileError, read_tensors
from augcam.cams import upsample
from augcam.rundir import RunDir

__all__ = ["TestImages", "load_test_images", "CamSets"]


@dataclass
class TestImages:
    """Test images of a run as (N, H, W, 3) floats in [0, 1] at the model's input size, keyed by
    image_index; `classes` are the dataset's class names."""

    images: dict[int, np.ndarray]
    classes: tuple[str, ...]
    input_size: tuple[int, int]

    def rgb(self, image_index: int) -> np.ndarray:
        return self.images[image_index]


def load_test_images(study: dict, image_indices: np.ndarray, labels: np.ndarray) -> TestImages:
    """The test images `image_indices` (official test-set positions) of the study, loaded and
    split as the study did; raises `AugcamError` (ConfigError, DataError, ReportError) when the
    data cannot be loaded or is not the data the tables were computed on."""
    from augcam.config import load_config
    from augcam.data import load_dataset_parts
    from augcam.data.splits import study_split

    config = load_config(study)
    d = config.data
    parts = load_dataset_parts(d.dataset, d.root, d.download)
    train_set, test_set = parts.train, parts.test
    where = f"data.dataset {d.dataset!r} (root {d.root or 'default search'})"
    try:
        split = study_split(d, train_set.labels, test_set.labels, parts.val.labels if parts.val is not None else None)
    except ValueError as err:
        raise ReportError(f"{where}: cannot make the study's split from the data on this machine ({err})") from None
    wanted = np.asarray(image_indices, dtype=np.int64)
    if not np.isin(wanted, split.test.numpy()).all():
        raise ReportError(
            f"{where}: the study's test split on this machine does not hold the tables' "
            "image_index values; the data differs from the data the study ran on"
        )
    found = test_set.labels[torch.tensor(wanted)].numpy()
    if not np.array_equal(found, np.asarray(labels)):
        raise ReportError(
            f"{where}: test labels on this machine differ from the labels in the tables; "
            "the data differs from the data the study ran on"
        )
    height, width = test_set.images.shape[-2:]
    size = (d.image_size, d.image_size) if d.image_size else (int(height), int(width))
    batch = test_set.images[torch.tensor(wanted)].float().div(255)
    if tuple(batch.shape[-2:]) != size:  # the models saw resized inputs; the CAMs are at that size
        batch = F.interpolate(batch, size=size, mode="bilinear", align_corners=False).clamp(0, 1)
    if batch.shape[1] == 1:
        batch = batch.expand(-1, 3, -1, -1)
    rgb = batch.permute(0, 2, 3, 1).numpy()
    return TestImages({int(i): rgb[k] for k, i in enumerate(wanted)}, tuple(test_set.classes), size)


@dataclass
class CamSets:
    """Stored CAM sets of a run, read lazily, one file per model."""

    root: Path
    _loaded: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    _rows: dict[str, dict[int, int]] = field(default_factory=dict)

    def _load(self, model_id: str) -> dict[str, torch.Tensor]:
        if model_id not in self._loaded:
            path = RunDir(self.root).cams_file(model_id)
            if not path.exists():
                raise ReportError(
                    f"{path}: missing; the CAM grids of extreme images need every finished model's stored CAMs"
                )
            try:
                tensors = read_tensors(path)
            except DamagedFileError as err:
                raise ReportError(
                    f"{path}: damaged ({err.why}); rerun `augcam run` on this directory to recompute it"
                ) from None
            for key in ("raw", "predictions", "image_index"):
                if key not in tensors:
                    raise ReportError(f"{path}: has no {key!r} tensor; it was not written by augcam's explain stage")
            self._loaded[model_id] = tensors
            self._rows[model_id] = {int(i): row for row, i in enumerate(tensors["image_index"].tolist())}
        return self._loaded[model_id]

    def _row(self, model_id: str, image_index: int) -> int:
        self._load(model_id)
        rows = self._rows[model_id]
        if image_index not in rows:
            raise ReportError(f"{RunDir(self.root).cams_file(model_id)}: has no CAM for test image {image_index}")
        return rows[image_index]

    def load(self, model_ids: list[str]) -> None:
        """Read the CAM sets of `model_ids` now, so that a missing or corrupt file stops the report
        before anything is drawn or written."""
        for model_id in model_ids:
            self._load(model_id)

    def raw_size(self, model_id: str) -> tuple[int, int]:
        return tuple(int(s) for s in self._load(model_id)["raw"].shape[-2:])  # type: ignore[return-value]

    def cam(self, model_id: str, image_index: int, size: tuple[int, int]) -> np.ndarray:
        """The input-sized map (H, W) in [0, 1] of one model on one test image."""
        row = self._row(model_id, image_index)
        raw = self._loaded[model_id]["raw"][row : row + 1]
        return upsample(raw, size)[0].numpy()

    def prediction(self, model_id: str, image_index: int) -> int:
        row = self._row(model_id, image_index)
        return int(self._loaded[model_id]["predictions"][row])
