"""The sections of a study file (`data`, `model`, `training`, `cam`, ...), one pydantic model each.

Every section forbids unknown keys, so a misspelled key is an error with a suggestion instead of
a silently ignored setting. Names that select an implementation (a model, an augmentation, an
optimizer, a CAM method, ...) are checked against their registry, so a user-registered entry is
accepted like a built-in one.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import (
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from augcam.config.base_section import Section
from augcam.config.checks import Name, Seed
from augcam.errors import ConfigError


class DataConfig(Section):
    dataset: str = "fashion-mnist"
    root: str | None = None  # None: $AUGCAM_DATA, then the dataset's standard places
    download: bool = False  # allow torchvision's downloader when the files are nowhere on disk
    val_fraction: float = Field(0.1, gt=0, lt=1)  # of the official training set, stratified
    split_seed: Seed = 0
    train_size: PositiveInt | None = None  # stratified subsets of each part, for quick studies
    val_size: PositiveInt | None = None
    test_size: PositiveInt | None = None
    image_size: PositiveInt | None = None  # resize inputs to image_size × image_size for the model


class ModelConfig(Section):
    name: str = "small_cnn"  # a registered name, or torchvision:NAME / timm:NAME (any classifier of those)
    target_layer: str | None = None  # None: the model's declared layer, else found automatically
    params: dict[str, Any] = Field(default_factory=dict)  # keyword arguments of the model's constructor
    weights: str | None = None  # initial weights from a local .safetensors / .pt file (never downloaded)

    @field_validator("name")
    @classmethod
    def _known_model(cls, name: str) -> str:
        from augcam.models import model_spec

        model_spec(name)
        return name


class AugmentationConfig(Section):
    """One augmentation of the study: a registered name, its parameters, and the label it has in
    tables (defaults to the name; two entries of one augmentation need different labels)."""

    # How errors name the entry (a subclass lists its entries under another field).
    WHERE: ClassVar[str] = "augmentations"

    name: str
    label: Name | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_short_forms(cls, value: Any) -> Any:
        # `- affine` and `- {name: affine, degrees: 10}` are both accepted in YAML.
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, dict) and "params" not in value:
            value = dict(value)
            params = {k: value.pop(k) for k in list(value) if k not in ("name", "label")}
            return {**value, "params": params}
        return value

    @model_validator(mode="after")
    def _valid_augmentation(self) -> AugmentationConfig:
        self.build()
        return self

    @property
    def display(self) -> str:
        return self.label or self.name

    def build(self):
        from augcam.augment import build_augmentation

        return build_augmentation(self.name, self.params, where=f"{self.WHERE}[{self.display}]")

    def resolved_params(self) -> dict[str, Any]:
        return self.build().model_dump(mode="json")

    def resolved(self) -> dict[str, Any]:
        """The entry in a resolved config: name, label and every parameter, defaults included."""
        return {"name": self.name, "label": self.display, "params": self.resolved_params()}


class BaseAugmentationConfig(AugmentationConfig):
    """An augmentation every model trains with, the baseline included (`training.base_augmentations`)."""

    WHERE: ClassVar[str] = "training.base_augmentations"

    @model_validator(mode="after")
    def _changes_each_image_alone(self) -> BaseAugmentationConfig:
        from augcam.augment import AUGMENTATIONS

        if not AUGMENTATIONS.lookup(self.name, where=f"{self.WHERE}[{self.display}]").per_image:
            raise ConfigError(
                f"{self.WHERE}[{self.display}]: {self.name} mixes the images of a batch (and so "
                "their labels); a base augmentation must change each image on its own, e.g. "
                "horizontal_flip or translate"
            )
        return self


class TrainingConfig(Section):
    epochs: PositiveInt = 30
    batch_size: PositiveInt = 32
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 1e-5
    init_seed: Seed = 0  # initial weights, shared by every model
    ordering_seed: Seed = 0  # order of source images, shared by every model
    copies: PositiveInt = 1  # k augmented copies of each training image
    eval_batch_size: PositiveInt = 512
    # null: an epoch is one pass over the training set; N: an epoch is N batches (Tang et al.'s
    # "30 epochs of 10 steps"), so every model takes the same number of steps whatever its set's size.
    steps_per_epoch: PositiveInt | None = None
    # The published protocols, when asked for (docs/design.md, "Same order"). order: per_epoch
    # visits the positions in a new order every epoch, drawn from (ordering seed, epoch); once
    # draws one order and keeps it every epoch (the thesis's Appendix B: the augmented set shuffled
    # once with a stable seed, loaded without shuffling). copies_drawn: per_epoch redraws each
    # image's augmented copies every epoch from (seed, epoch, batch); once generates them once from
    # the seed's stream and trains every epoch on that fixed set (Tang et al.'s 1,100-image sets).
    # Either way position p reads the same source image in every model. Non-default values are in
    # the model id (copies_drawn only in an augmented model's), so existing ids do not change.
    order: Literal["per_epoch", "once"] = "per_epoch"
    copies_drawn: Literal["per_epoch", "once"] = "per_epoch"
    # The fast recipe (docs/benchmarks.md). Defaults: the reference study's loop, bit for bit. Every
    # one of these changes the weights, so a non-default value is in the model id. optimizer,
    # schedule and precision are names in augcam.training.recipe's OPTIMIZERS, SCHEDULES, PRECISIONS.
    optimizer: str = "adam"
    schedule: str = "constant"
    warmup_fraction: float = Field(0.2, gt=0, lt=1)  # onecycle only
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    precision: str = "fp32"  # bf16: autocast of forward pass and loss
    channels_last: bool = False
    compile: bool = False  # torch.compile of the training forward pass (not of CAMs)
    # Augmentations every model trains with, the baseline included (e.g. the flips and translations
    # of the CIFAR-10 speed-training recipes), applied to every training image before the study's
    # augmentation; their randomness comes from (ordering seed, epoch, batch) alone, so models that
    # visit the same batches see the same images. Empty (the default): the methodology's
    # un-augmented baseline. A non-empty list is in every model id.
    base_augmentations: list[BaseAugmentationConfig] = Field(default_factory=list)

    @field_validator("optimizer", "schedule", "precision")
    @classmethod
    def _registered_recipe_name(cls, name: str, info: ValidationInfo) -> str:
        from augcam.training.recipe import OPTIMIZERS, PRECISIONS, SCHEDULES

        registry = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "precision": PRECISIONS}[info.field_name]
        try:
            registry.lookup(name)
        except ConfigError as err:
            # A ValueError, so that the error names the field and is reported with the file's other problems.
            raise ValueError(str(err)) from None
        return name

    def recipe(self) -> dict[str, Any]:
        """The fast-recipe settings that differ from their defaults (empty for the reference loop,
        so the model ids of existing studies do not change)."""
        return {
            name: getattr(self, name)
            for name in RECIPE_FIELDS
            if getattr(self, name) != type(self).model_fields[name].default
        }


RECIPE_FIELDS = ("optimizer", "schedule", "warmup_fraction", "label_smoothing", "precision", "channels_last", "compile")


class GuidedConfig(Section):
    """One mask-guided intervention (Viviano et al.): a model per seed trained with cross-entropy
    plus a loss from `augcam.training.guided.GUIDED_LOSSES` on the training masks, without augmentation,
    and compared with the baseline like an augmented model (docs/mask-guided.md).

    loss = ce_weight · cross-entropy + weight · GUIDED_LOSSES[loss]; `ce_weight: 0` with
    `classify_masked` is Viviano's "masked" baseline. feature_layer: the module whose input is
    actdiff's penultimate features (None: the model's declared classifier, else its last Linear).
    """

    loss: str
    label: Name | None = None
    weight: PositiveFloat = 1.0
    ce_weight: NonNegativeFloat = 1.0
    feature_layer: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_short_form(cls, value: Any) -> Any:
        # `- actdiff` is accepted in YAML for `- {loss: actdiff}`.
        return {"loss": value} if isinstance(value, str) else value

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, loss: str) -> str:
        from augcam.training.guided import GUIDED_LOSSES

        GUIDED_LOSSES.lookup(loss, where="guided.loss")
        return loss

    @property
    def display(self) -> str:
        return self.label or self.loss


class ControlsConfig(Section):
    """Controls that separate an augmentation's effect from everything else (docs/trustworthy.md).

    identity: train the null models: the `identity` augmentation (a copy of each image carrying
    Gaussian noise of std `null_noise_std`, a quarter of one grey level by default, drawn from the
    seed's random stream) under `null_models` seeds: the study's seeds first, then the smallest
    integers not among them. They take the augmented models' number of steps and share their split,
    initial weights and data order, and differ from each other only through the random stream, as an
    augmentation's seeds do; so they are the reference the model-level test compares each
    augmentation with. null_models 0 trains none; with 0 or 1 there is no model-level test. 12 by
    default: 3 seeds against 12 reach p = 1/455, so one augmentation differing in every metric
    passes Benjamini–Hochberg on its own among up to 22 (analysis/design.py).
    baseline_replicas: baselines retrained with another ordering seed (odd replicas) or another
    init seed (even replicas): how much the baseline depends on its init and data order, which the
    design holds fixed for every other model (so they are not the null).
    sanity_images: test images for the cascading-randomisation sanity check of the CAM method
    (0 turns it off). data_randomization: also train a baseline on permuted labels and compare its
    CAMs with the baseline's (the data-randomisation sanity check; one more model).
    """

    identity: bool = True
    null_models: int = Field(12, ge=0)
    null_noise_std: float = 1e-3
    baseline_replicas: int = Field(2, ge=0)
    sanity_images: int = Field(200, ge=0)
    data_randomization: bool = False

    @field_validator("null_noise_std")
    @classmethod
    def _small_but_not_zero(cls, value: float) -> float:
        from augcam.augment.photometric import MAX_NULL_NOISE_STD

        if not 0.0 < value < MAX_NULL_NOISE_STD:
            # 0 would train the very same model under every seed: null models without a spread.
            raise ValueError(
                f"must be > 0 (without noise every null model is the same model) and < "
                f"{MAX_NULL_NOISE_STD} (2.5 grey levels of 255: the null models' change must stay "
                f"imperceptible), got {value}"
            )
        return value

    trains_null_models = property(lambda self: self.identity and self.null_models > 0)


class ResourcesConfig(Section):
    """What each model's task asks a Ray cluster for (`augcam run --executor ray`, docs/cluster.md).

    cpus_per_model: CPUs reserved per model (> 0; fractions allowed). gpus_per_model: share of a
    GPU per model, in [0, 1] (0.25: four small models share a GPU; 1: a whole GPU); null means 1
    when the models train on a GPU (device cuda, or auto on a cluster with GPUs) and 0 otherwise.
    max_retries: how often a model whose worker process or node died is started again (from its
    last epoch checkpoint). None of these change a model's weights, so they are not in its id,
    and the local executor ignores them.
    """

    cpus_per_model: PositiveFloat = 1.0
    gpus_per_model: float | None = Field(None, ge=0, le=1)
    max_retries: int = Field(3, ge=0)
