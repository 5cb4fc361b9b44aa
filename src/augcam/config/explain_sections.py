"""The sections of a study file that say how models are explained and compared: `cam`,
`metrics`, `faithfulness` (the others are in `augcam.config.sections`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, PositiveFloat, PositiveInt, field_validator, model_validator

from augcam.config.base_section import Section
from augcam.config.checks import distinct, distinct_percentages
from augcam.errors import ConfigError


class CamConfig(Section):
    method: str = "gradcam"
    target: Literal["predicted", "label"] = "predicted"
    batch_size: PositiveInt = 256
    # Further methods computed for the baseline and the augmented models; the report then says
    # whether each metric ranks the augmentations the same way under every method.
    extra_methods: list[str] = Field(default_factory=list)
    # Compute CAMs on an inference copy of each model (BatchNorm folded into the convolutions,
    # channels_last, frozen parameters): the same maps up to float32 rounding, several times
    # faster on a CPU. false: the model as trained, i.e. pytorch-grad-cam's arithmetic exactly.
    optimize: bool = True

    @field_validator("method")
    @classmethod
    def _known_method(cls, method: str) -> str:
        from augcam.cams import CAM_METHODS

        CAM_METHODS.lookup(method, where="cam.method")
        return method

    @field_validator("extra_methods")
    @classmethod
    def _known_methods(cls, methods: list[str]) -> list[str]:
        from augcam.cams import CAM_METHODS

        for method in methods:
            CAM_METHODS.lookup(method, where="cam.extra_methods")
        return distinct(methods, "methods")

    @model_validator(mode="after")
    def _extra_differs(self) -> CamConfig:
        if self.method in self.extra_methods:
            raise ValueError(f"extra_methods repeats cam.method {self.method!r}")
        return self

    @property
    def methods(self) -> list[str]:
        """Every CAM method of the study, the main one first."""
        return [self.method, *self.extra_methods]


class MetricsConfig(Section):
    overlap_percentages: list[float] = Field(default_factory=lambda: [20.0, 10.0, 5.0], min_length=1)
    kld_eps: PositiveFloat = 1e-10
    # Saliency metrics of Tang et al.'s MNIST study (augcam.metrics.saliency: cc, kl, entropy),
    # computed next to the CAM metrics; off by default so existing studies' tables do not change.
    saliency: list[str] = Field(default_factory=list)
    kl_eps_saliency: PositiveFloat = 2.220446049250313e-16  # float64 machine epsilon (DEFAULT_KL_EPS)

    @field_validator("saliency")
    @classmethod
    def _known_saliency_metrics(cls, names: list[str]) -> list[str]:
        from augcam.metrics import MAP_METRICS
        from augcam.metrics.saliency import SALIENCY_METRICS, SINGLE_MAP_METRICS
        from augcam.registry import Registry

        known: Registry[object] = Registry("saliency metric")
        known.update(SALIENCY_METRICS)
        known.update(SINGLE_MAP_METRICS)
        for name in names:
            known.lookup(name, where="metrics.saliency")
            if name in MAP_METRICS:
                # e.g. after register_saliency_metrics(): the column would be written twice.
                raise ValueError(
                    f"{name!r} is also a CAM map metric (MAP_METRICS), so its column would clash; "
                    "leave it out of metrics.saliency"
                )
        return distinct(names, "metrics")

    @field_validator("overlap_percentages")
    @classmethod
    def _percentages(cls, values: list[float]) -> list[float]:
        return distinct_percentages(values)


def _registered_fill(fill: str) -> str:
    from augcam.metrics.faithfulness import FILLS

    try:
        FILLS.lookup(fill)
    except ConfigError as err:
        raise ValueError(str(err)) from None
    return fill


class FaithfulnessConfig(Section):
    """The faithfulness stage (docs/faithfulness.md), off by default: per model on the test set,
    the drop in true-class probability when the top-q% pixels of its CAM are removed minus the
    drop for as many random pixels (`draws` random sets), deletion / insertion AUC over `steps`
    removal steps, and accuracy under random occlusion — once per fill in `fills`. `images`: only
    the first N test images (null: all of them)."""

    enabled: bool = False
    percentages: list[float] = Field(default_factory=lambda: [5.0, 10.0, 20.0, 50.0], min_length=1)
    # Names in augcam.metrics.faithfulness.FILLS, checked one by one so an error names the entry.
    fills: list[Annotated[str, AfterValidator(_registered_fill)]] = Field(
        default_factory=lambda: ["zero", "mean", "blur"], min_length=1
    )
    draws: PositiveInt = 5
    steps: PositiveInt = 20
    occlusion_percentages: list[float] = Field(default_factory=lambda: [10.0, 25.0, 50.0], min_length=1)
    blur_sigma: PositiveFloat = 5.0
    images: PositiveInt | None = None
    batch_size: PositiveInt = 256

    @field_validator("percentages", "occlusion_percentages")
    @classmethod
    def _percentages(cls, values: list[float]) -> list[float]:
        return distinct_percentages(values)

    @field_validator("fills")
    @classmethod
    def _distinct_fills(cls, fills: list[str]) -> list[str]:
        return distinct(fills, "fills")
