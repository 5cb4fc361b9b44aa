"""Study configuration: one YAML file (or a preset name) → a validated `StudyConfig`.

Every section forbids unknown keys, so a misspelled key is an error with a suggestion instead of
a silently ignored setting. The resolved config (every default filled in) is written to the run
directory as `study.yaml`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import yaml
from pydantic import (BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt,
                      ValidationError, ValidationInfo, field_validator, model_validator)

from augcam.errors import ConfigError


class Section(BaseModel):
    # allow_inf_nan=False: `lr: .inf` or `kld_eps: .nan` would pass every `gt`/`ge` bound otherwise.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # YAML reads `yes`/`no`/`true` as booleans and pydantic would quietly take them as 1 and 0.
        if isinstance(value, bool):
            annotation = cls.model_fields[info.field_name].annotation
            if annotation is not bool and bool not in get_args(annotation):
                raise ValueError(f"expected a value of type {_type_name(annotation)}, got the boolean {value}")
        return value


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


class DataConfig(Section):
    dataset: str = "fashion-mnist"
    root: str | None = None  # None: $AUGCAM_DATA, then the dataset's standard places
    download: bool = False  # allow torchvision's downloader when the files are nowhere on disk
    val_fraction: float = Field(0.1, gt=0, lt=1)  # of the official training set, stratified
    split_seed: int = 0
    train_size: PositiveInt | None = None  # stratified subsets of each part, for quick studies
    val_size: PositiveInt | None = None
    test_size: PositiveInt | None = None
    image_size: PositiveInt | None = None  # resize inputs to image_size × image_size for the model


class ModelConfig(Section):
    name: str = "small_cnn"
    target_layer: str | None = None  # None: the architecture's last convolutional stage

    @field_validator("name")
    @classmethod
    def _known_model(cls, name: str) -> str:
        from augcam.models import MODELS

        MODELS.lookup(name, where="model.name")
        return name


class AugmentationConfig(Section):
    """One augmentation of the study: a registered name, its parameters, and the label it has in
    tables (defaults to the name; two entries of one augmentation need different labels)."""

    # How errors name the entry (a subclass lists its entries under another field).
    WHERE: ClassVar[str] = "augmentations"

    name: str
    label: str | None = None
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
    def _valid_augmentation(self) -> "AugmentationConfig":
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
    def _changes_each_image_alone(self) -> "BaseAugmentationConfig":
        from augcam.augment import AUGMENTATIONS

        if not AUGMENTATIONS.lookup(self.name, where=f"{self.WHERE}[{self.display}]").per_image:
            raise ConfigError(f"{self.WHERE}[{self.display}]: {self.name} mixes the images of a batch (and so "
                              "their labels); a base augmentation must change each image on its own, e.g. "
                              "horizontal_flip or translate")
        return self


class TrainingConfig(Section):
    epochs: PositiveInt = 30
    batch_size: PositiveInt = 32
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 1e-5
    init_seed: int = 0  # initial weights, shared by every model
    ordering_seed: int = 0  # order of source images, shared by every model
    copies: PositiveInt = 1  # k augmented copies of each training image
    eval_batch_size: PositiveInt = 512
    # null: an epoch is one pass over the training set; N: an epoch is N batches (Tang et al.'s
    # "30 epochs of 10 steps"), so every model takes the same number of steps whatever its set's size.
    steps_per_epoch: PositiveInt | None = None
    # The fast recipe (issue 6; docs/benchmarks.md). Defaults: the reference study's loop, bit for
    # bit. Every one of these changes the weights, so a non-default value is in the model id.
    optimizer: Literal["adam", "sgd_nesterov"] = "adam"
    schedule: Literal["constant", "onecycle"] = "constant"
    warmup_fraction: float = Field(0.2, gt=0, lt=1)  # onecycle only
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast of forward pass and loss
    channels_last: bool = False
    compile: bool = False  # torch.compile of the training forward pass (not of CAMs)
    # Augmentations every model trains with, the baseline included (e.g. the flips and translations
    # of the CIFAR-10 speed-training recipes), applied to every training image before the study's
    # augmentation; their randomness comes from (ordering seed, epoch, batch) alone, so models that
    # visit the same batches see the same images. Empty (the default): the methodology's
    # un-augmented baseline. A non-empty list is in every model id.
    base_augmentations: list[BaseAugmentationConfig] = Field(default_factory=list)

    def recipe(self) -> dict[str, Any]:
        """The fast-recipe settings that differ from their defaults (empty for the reference loop,
        so the model ids of existing studies do not change)."""
        return {name: getattr(self, name) for name in RECIPE_FIELDS
                if getattr(self, name) != type(self).model_fields[name].default}


RECIPE_FIELDS = ("optimizer", "schedule", "warmup_fraction", "label_smoothing", "precision", "channels_last",
                 "compile")


class GuidedConfig(Section):
    """One mask-guided intervention (Viviano et al.): a model per seed trained with cross-entropy
    plus a loss from `augcam.guided.GUIDED_LOSSES` on the training masks, without augmentation,
    and compared with the baseline like an augmented model (docs/mask-guided.md).

    loss = ce_weight · cross-entropy + weight · GUIDED_LOSSES[loss]; `ce_weight: 0` with
    `classify_masked` is Viviano's "masked" baseline. feature_layer: the module whose input is
    actdiff's penultimate features (None: the model's declared classifier, else its last Linear).
    """

    loss: str
    label: str | None = None
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
        from augcam.guided import GUIDED_LOSSES

        GUIDED_LOSSES.lookup(loss, where="guided.loss")
        return loss

    @property
    def display(self) -> str:
        return self.label or self.loss


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
    def _extra_differs(self) -> "CamConfig":
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
                raise ValueError(f"{name!r} is also a CAM map metric (MAP_METRICS), so its column would clash; "
                                 "leave it out of metrics.saliency")
        return distinct(names, "metrics")

    @field_validator("overlap_percentages")
    @classmethod
    def _percentages(cls, values: list[float]) -> list[float]:
        return distinct_percentages(values)


def distinct(values: list, what: str) -> list:
    """`values` unchanged, or a ValueError naming `what` when one is listed twice."""
    if len(set(values)) != len(values):
        raise ValueError(f"{what} must be distinct, got {values}")
    return values


def gpus_device_conflict(gpus: float | None, device: str) -> str | None:
    """Why resources.gpus_per_model cannot go with `device`, or None when they agree (checked when
    a config is validated, and again by the Ray executor after a --device override)."""
    if gpus is not None and gpus > 0 and device in ("cpu", "mps"):
        return (f"resources.gpus_per_model: {gpus:g} asks for GPUs, but device is {device!r}; "
                "set it to 0 (or leave it out), or use device: cuda or auto")
    if gpus == 0 and device.startswith("cuda"):
        return (f"resources.gpus_per_model: 0 gives the models no GPU, but device is {device!r}; "
                "give each model a share of a GPU (e.g. 0.25), or leave it out")
    return None


def distinct_percentages(values: list[float]) -> list[float]:
    """Percentages of a map's pixels (Overlap Rate@Y, faithfulness@q): each in (0, 100], distinct."""
    for value in values:
        if not 0 < value <= 100:
            raise ValueError(f"each percentage must be in (0, 100], got {value:g}")
    if len(set(values)) != len(values):
        raise ValueError("percentages must be distinct")
    return values


class FaithfulnessConfig(Section):
    """The faithfulness stage (docs/faithfulness.md), off by default: per model on the test set,
    the drop in true-class probability when the top-q% pixels of its CAM are removed minus the
    drop for as many random pixels (`draws` random sets), deletion / insertion AUC over `steps`
    removal steps, and accuracy under random occlusion — once per fill in `fills`. `images`: only
    the first N test images (null: all of them)."""

    enabled: bool = False
    percentages: list[float] = Field(default_factory=lambda: [5.0, 10.0, 20.0, 50.0], min_length=1)
    fills: list[Literal["zero", "mean", "blur"]] = Field(default_factory=lambda: ["zero", "mean", "blur"],
                                                         min_length=1)
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


IDENTITY = "identity"  # the control augmentation: an unchanged copy of each image


class ControlsConfig(Section):
    """Controls that separate an augmentation's effect from everything else (docs/trustworthy.md).

    identity: add the `identity` augmentation (an unchanged copy of each image), so the augmented
    models' extra training steps are measured apart from the transformation.
    baseline_replicas: baselines retrained with another ordering seed (odd replicas) or another
    init seed (even replicas); their CAMs vs the baseline's give the noise floor of every metric.
    sanity_images: test images for the cascading-randomisation sanity check of the CAM method
    (0 turns it off). data_randomization: also train a baseline on permuted labels and compare its
    CAMs with the baseline's (the data-randomisation sanity check; one more model).
    """

    identity: bool = True
    baseline_replicas: int = Field(2, ge=0)
    sanity_images: int = Field(200, ge=0)
    data_randomization: bool = False


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


class StudyConfig(Section):
    name: str = Field(min_length=1)
    description: str = ""
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    augmentations: list[AugmentationConfig] = Field(default_factory=list)
    # Mask-guided interventions, each trained and compared like an augmentation (GuidedConfig).
    guided: list[GuidedConfig] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    cam: CamConfig = CamConfig()
    metrics: MetricsConfig = MetricsConfig()
    controls: ControlsConfig = ControlsConfig()
    resources: ResourcesConfig = ResourcesConfig()
    faithfulness: FaithfulnessConfig = FaithfulnessConfig()
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # A PUBLISHED_RESULTS entry (augcam.published) the report compares this study's accuracies with.
    published: str | None = None

    @field_validator("published")
    @classmethod
    def _known_published(cls, name: str | None) -> str | None:
        if name is not None:
            from augcam.published import PUBLISHED_RESULTS

            PUBLISHED_RESULTS.lookup(name, where="published")
        return name

    @field_validator("augmentations")
    @classmethod
    def _distinct_labels(cls, entries: list[AugmentationConfig]) -> list[AugmentationConfig]:
        labels = [entry.display for entry in entries]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(f"augmentation {', '.join(map(repr, repeated))} is listed more than once; "
                             "give each entry its own `label`")
        if "baseline" in labels:
            raise ValueError("'baseline' is reserved for the model trained without augmentation")
        # Two labels for one augmentation with the same parameters would train the same model twice
        # (same model id) and compare it with itself under two names.
        seen: dict[str, str] = {}
        for entry in entries:
            key = digest({"name": entry.name, "params": entry.resolved_params()})
            if key in seen:
                raise ValueError(f"augmentations {seen[key]!r} and {entry.display!r} are the same augmentation "
                                 f"({entry.name}) with the same parameters; they would train identical models")
            seen[key] = entry.display
        return entries

    @model_validator(mode="after")
    def _something_to_compare(self) -> "StudyConfig":
        if not self.augmentations and not self.guided:
            raise ValueError("augmentations: List should have at least 1 item (or list mask-guided "
                             "interventions under `guided`)")
        labels = [entry.display for entry in self.augmentations]
        if self.guided and self.training.base_augmentations:
            raise ValueError("training.base_augmentations: not with `guided` entries (a mask-guided loss needs "
                             "masks that match the training images, and base augmentations move the pixels)")
        for entry in self.guided:
            if entry.display in labels or entry.display == "baseline":
                raise ValueError(f"guided: label {entry.display!r} is already used (by an augmentation, another "
                                 "guided entry, or the baseline); give the entry its own `label`")
            if self.controls.identity and entry.display == IDENTITY:
                raise ValueError(f"guided: {IDENTITY!r} is the label of the identity control")
            labels.append(entry.display)
        return self

    @model_validator(mode="after")
    def _identity_once(self) -> "StudyConfig":
        if self.controls.identity and IDENTITY in [entry.display for entry in self.augmentations]:
            raise ValueError(f"augmentations: {IDENTITY!r} is the control that controls.identity adds; "
                             "remove it from the list, or set controls.identity: false")
        return self

    @model_validator(mode="after")
    def _gpus_match_device(self) -> "StudyConfig":
        conflict = gpus_device_conflict(self.resources.gpus_per_model, self.device)
        if conflict:
            raise ValueError(conflict)
        return self

    @property
    def study_augmentations(self) -> list[AugmentationConfig]:
        """The augmentations the study trains: the listed ones, then the identity control."""
        extra = [AugmentationConfig(name=IDENTITY)] if self.controls.identity else []
        return list(self.augmentations) + extra

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


def check_device_name(device: str) -> str:
    """`device` if it is a device augcam knows how to ask for; ValueError otherwise."""
    if device in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", device):
        return device
    raise ValueError(f"expected auto, cpu, cuda, cuda:N or mps, got {device!r}")


def digest(value: Any) -> str:
    """SHA-256 of a JSON-serialisable value in canonical form."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# --- loading -------------------------------------------------------------------------------


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("augcam.presets").iterdir() if p.name.endswith(".yaml"))


def preset_text(name: str) -> str:
    return resources.files("augcam.presets").joinpath(f"{name}.yaml").read_text()


def preset_summary(name: str) -> str:
    return str(yaml.safe_load(preset_text(name)).get("description", "")).strip().splitlines()[0]


def load_config(source: str | Path | dict, overrides: dict[str, Any] | None = None) -> StudyConfig:
    """A validated StudyConfig from a preset name, a YAML file, or a dict.

    Errors (unreadable file, YAML syntax, unknown keys, wrong values) raise one ConfigError that
    names the file and the field.
    """
    origin = "config"
    if isinstance(source, dict):
        data = source
    else:
        path = Path(source)
        if path.suffix in (".yaml", ".yml") or path.exists():
            origin = str(path)
            try:
                text = path.read_text()
            except FileNotFoundError:
                raise ConfigError(f"{path}: no such study file (presets: {', '.join(preset_names())})") from None
            except OSError as err:
                raise ConfigError(f"{path}: cannot read the study file ({err.strerror})") from None
        elif str(source) in preset_names():
            origin = f"preset {source!r}"
            text = preset_text(str(source))
        else:
            near = difflib.get_close_matches(str(source), preset_names(), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ConfigError(f"{source!r} is neither a study file nor a preset{hint} "
                              f"(presets: {', '.join(preset_names())})")
        data = _parse_yaml(text, origin)
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err, origin)) from None
    except ConfigError as err:  # raised by a registry lookup inside a validator
        raise ConfigError(f"{origin}: {err}") from None


def with_device(config: StudyConfig, device: str) -> StudyConfig:
    """`config` with its device replaced (the `--device` option), validated again as a whole: the
    device must agree with the rest of the config (e.g. resources.gpus_per_model) as it must in
    the study file. Everything else stays equal (same config hash)."""
    try:
        check_device_name(device)
    except ValueError as err:
        raise ConfigError(f"--device: {err}") from None
    try:
        return StudyConfig.model_validate({**config.model_dump(), "device": device})
    except ValidationError as err:
        raise ConfigError(_describe(err, "--device")) from None


def _parse_yaml(text: str, origin: str) -> dict:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{origin}{where}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: a study file must be a mapping of keys (name, data, model, ...), "
                          f"got {type(data).__name__}")
    return data


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {key!r} is not a section")
    node[leaf] = value


def _fields_at(loc: tuple) -> list[str]:
    """The valid keys of the section at `loc` (a pydantic error location without its last item)."""
    model: Any = StudyConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        inner = getattr(annotation, "__args__", None)
        model = inner[0] if inner and isinstance(inner[0], type) else annotation
    return list(getattr(model, "model_fields", {}))


def _describe(err: ValidationError, origin: str) -> str:
    lines = []
    for error in err.errors():
        loc = tuple(error["loc"])
        where = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
        if error["type"] == "extra_forbidden":
            valid = _fields_at(loc[:-1])
            near = difflib.get_close_matches(str(loc[-1]), valid, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            lines.append(f"{where}: unknown key{hint} (valid keys: {', '.join(valid)})")
        elif error["type"] == "missing":
            lines.append(f"{where}: required key is missing")
        else:
            message = error["msg"].removeprefix("Value error, ")
            shown = f" (got {error['input']!r})" if error["type"] not in ("value_error", "assertion_error") \
                and not isinstance(error.get("input"), (dict, list)) else ""
            lines.append(f"{where}: {message}{shown}" if where else f"{message}{shown}")
    if len(lines) == 1:
        return f"{origin}: {lines[0]}"
    return f"{origin}: {len(lines)} problems:\n" + "\n".join(f"  - {line}" for line in lines)
