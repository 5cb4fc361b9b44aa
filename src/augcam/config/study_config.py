"""`StudyConfig`: a whole study file, validated as one, and its resolved form and hash."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from augcam.atomic import TEMP_NAME_EXTRA
from augcam.config.base_section import Section
from augcam.config.checks import (
    NAME_MAX_BYTES,
    Name,
    Seed,
    check_device_name,
    digest,
    distinct,
    distinct_labels,
    gpus_device_conflict,
)
from augcam.config.explain_sections import CamConfig, FaithfulnessConfig, MetricsConfig
from augcam.config.sections import (
    AugmentationConfig,
    ControlsConfig,
    DataConfig,
    GuidedConfig,
    ModelConfig,
    ResourcesConfig,
    TrainingConfig,
)
from augcam.rundir import BASELINE, IDENTITY, RunDir, model_id


class StudyConfig(Section):
    name: Name
    description: str = ""
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    augmentations: list[AugmentationConfig] = Field(default_factory=list)
    # Mask-guided interventions, each trained and compared like an augmentation (GuidedConfig).
    guided: list[GuidedConfig] = Field(default_factory=list)
    seeds: list[Seed] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    cam: CamConfig = CamConfig()
    metrics: MetricsConfig = MetricsConfig()
    controls: ControlsConfig = ControlsConfig()
    resources: ResourcesConfig = ResourcesConfig()
    faithfulness: FaithfulnessConfig = FaithfulnessConfig()
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # A PUBLISHED_RESULTS entry (augcam.analysis.published) the report compares this study's accuracies with.
    published: str | None = None

    @field_validator("published")
    @classmethod
    def _known_published(cls, name: str | None) -> str | None:
        if name is not None:
            from augcam.analysis.published import PUBLISHED_RESULTS

            PUBLISHED_RESULTS.lookup(name, where="published")
        return name

    @field_validator("augmentations")
    @classmethod
    def _distinct_labels(cls, entries: list[AugmentationConfig]) -> list[AugmentationConfig]:
        distinct_labels(entries, "augmentation")
        if BASELINE in [entry.display for entry in entries]:
            raise ValueError(f"{BASELINE!r} is reserved for the model trained without augmentation")
        # Two labels for one augmentation with the same parameters would train the same model twice
        # (same model id) and compare it with itself under two names.
        seen: dict[str, str] = {}
        for entry in entries:
            key = digest({"name": entry.name, "params": entry.resolved_params()})
            if key in seen:
                raise ValueError(
                    f"augmentations {seen[key]!r} and {entry.display!r} are the same augmentation "
                    f"({entry.name}) with the same parameters; they would train identical models"
                )
            seen[key] = entry.display
        return entries

    @model_validator(mode="after")
    def _something_to_compare(self) -> StudyConfig:
        if not self.augmentations and not self.guided:
            raise ValueError(
                "augmentations: List should have at least 1 item (or list mask-guided interventions under `guided`)"
            )
        labels = [entry.display for entry in self.augmentations]
        if self.guided and self.training.base_augmentations:
            raise ValueError(
                "training.base_augmentations: not with `guided` entries (a mask-guided loss needs "
                "masks that match the training images, and base augmentations move the pixels)"
            )
        for entry in self.guided:
            if entry.display in labels or entry.display == BASELINE:
                raise ValueError(
                    f"guided: label {entry.display!r} is already used (by an augmentation, another "
                    "guided entry, or the baseline); give the entry its own `label`"
                )
            if self.controls.identity and entry.display == IDENTITY:
                raise ValueError(f"guided: {IDENTITY!r} is the label of the identity control")
            labels.append(entry.display)
        return self

    @model_validator(mode="after")
    def _identity_once(self) -> StudyConfig:
        if self.controls.identity and IDENTITY in [entry.display for entry in self.augmentations]:
            raise ValueError(
                f"augmentations: {IDENTITY!r} is the control that controls.identity adds; "
                "remove it from the list, or set controls.identity: false"
            )
        return self

    @model_validator(mode="after")
    def _gpus_match_device(self) -> StudyConfig:
        conflict = gpus_device_conflict(self.resources.gpus_per_model, self.device)
        if conflict:
            raise ValueError(conflict)
        return self

    @model_validator(mode="after")
    def _file_names_fit(self) -> StudyConfig:
        # A model's longest file name is its CAM set's (an extra method's carries the method's name),
        # written first under a temporary name; past NAME_MAX its write would fail once the model trained.
        method = max([None, *self.cam.extra_methods], key=lambda name: len((name or "").encode()))
        named = [(e.name, f"augmentations[{e.display}]", self.seeds_of(e)) for e in self.study_augmentations]
        named += [(g.loss, f"guided[{g.display}]", self.seeds) for g in self.guided]
        for stem, where, seeds in named:
            longest = model_id(stem, max(seeds, key=lambda seed: len(str(seed))), "0" * 12)
            file = RunDir("").cams_file(longest, method).name
            size = len(file.encode()) + TEMP_NAME_EXTRA
            if size > NAME_MAX_BYTES:
                raise ValueError(
                    f"{where}: its models' CAM sets would be written as {file!r}, {size} bytes with the "
                    f"temporary name's additions; a file name has at most {NAME_MAX_BYTES} bytes: use a "
                    "shorter augmentation (or CAM method) name"
                )
        return self

    @property
    def study_augmentations(self) -> list[AugmentationConfig]:
        """The augmentations the study trains: the listed ones, then the identity control (the
        null models' augmentation) when the study trains null models."""
        extra = (
            [AugmentationConfig(name=IDENTITY, noise_std=self.controls.null_noise_std)]
            if self.controls.trains_null_models
            else []
        )
        return list(self.augmentations) + extra

    def is_null_control(self, entry: AugmentationConfig) -> bool:
        """Whether `entry` is the identity control the config adds (not an entry the user listed)."""
        # A listed entry cannot be labelled `identity` while the control is on (_identity_once).
        return self.controls.trains_null_models and entry.display == IDENTITY

    def seeds_of(self, entry: AugmentationConfig) -> list[int]:
        """The seeds `entry` is trained with: the study's seeds for a listed augmentation; for the
        identity control, `controls.null_models` seeds: the study's seeds first (null model x draws
        from the random stream of every augmentation's seed x), then the smallest non-negative
        integers not among them."""
        if not self.is_null_control(entry):
            return list(self.seeds)
        wanted = self.controls.null_models
        seeds = list(self.seeds[:wanted])
        candidate = 0
        while len(seeds) < wanted:
            if candidate not in self.seeds:
                seeds.append(candidate)
            candidate += 1
        return seeds

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        return distinct(seeds, "seeds")

    @field_validator("device")
    @classmethod
    def _device_name(cls, device: str) -> str:
        check_device_name(device)
        return device

    def resolved(self) -> dict[str, Any]:
        """The config with every default filled in, augmentation parameters included."""
        data = self.model_dump(mode="json")
        data["augmentations"] = [entry.resolved() for entry in self.augmentations]
        if not self.guided:
            del data["guided"]  # resolved configs (and hashes) of studies without guided stay as they were
        if self.training.base_augmentations:
            data["training"]["base_augmentations"] = [entry.resolved() for entry in self.training.base_augmentations]
        else:
            del data["training"]["base_augmentations"]  # likewise
        return data

    def config_hash(self) -> str:
        return digest(self.resolved())
