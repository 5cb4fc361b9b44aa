"""Published results that a preset reproduces, for the report's side-by-side comparison.

An entry names the paper, the quantities it reports per training set, and how augcam's labels
(the baseline and the augmentation labels of the preset) map to the paper's rows. A study points
at one with the top-level config key `published:`; the report then shows augcam's measured values
(mean ± std over the models of each training set) next to the published ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from augcam.registry import Registry

__all__ = ["PublishedResults", "PUBLISHED_RESULTS", "TANG_MNIST"]


@dataclass(frozen=True)
class PublishedResults:
    title: str
    source: str
    # Paper's row name → (best validation accuracy, test accuracy), in the paper's order.
    accuracies: dict[str, tuple[float, float]]
    # augcam label ("baseline" or an augmentation's label) → the paper's row name.
    rows: dict[str, str]


PUBLISHED_RESULTS: Registry[PublishedResults] = Registry("published results")

TANG_MNIST = PUBLISHED_RESULTS.register("tang-mnist")(
    PublishedResults(
        title='Tang, Sharma & Zhang, "Explaining the Effect of Data Augmentation on Image Classification Tasks" '
        "(Stanford CS231n poster, 2020)",
        source="their Table 1 (training results): best validation / test accuracy per training set of 1,100 images",
        accuracies={
            "original": (0.81, 0.78),
            "scaling": (0.71, 0.67),
            "random crop": (0.88, 0.87),
            "distortion": (0.85, 0.79),
            "blur": (0.74, 0.73),
            "random erasing": (0.79, 0.79),
        },
        rows={
            "baseline": "original",
            "scaling": "scaling",
            "random_crop": "random crop",
            "distortion": "distortion",
            "blur": "blur",
            "random_erasing": "random erasing",
        },
    )
)
