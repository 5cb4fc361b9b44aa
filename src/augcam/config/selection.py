"""An architecture selection file (`augcam select`): the candidate models, the study they are
compared for, and the seeds; validated as one, with errors that name the file and the field.

    name: my-selection
    study: thesis-cifar10          # a preset, a study file (relative to this file) or a mapping
    candidates:
      - efficientnet_b0            # a registered model name, or a mapping:
      - {name: torchvision:resnet18, label: ResNet-18, image_size: 224, target_layer: layer4}
    seeds: [0]                     # seed s: the study's init and ordering seeds + s
    tie_tolerance: 0.0             # validation accuracies this close to the best count as tied

Every candidate is trained as the study's baseline would be (same split, recipe and initialisation
rule, no augmentation); only its model (and, if given, its image size) differs. `candidate_study`
is that study, and the chosen candidate's is written as `chosen.yaml`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, NonNegativeFloat, PositiveInt, ValidationError, field_validator, model_validator

from augcam.config.base_section import Section
from augcam.config.checks import Name, Seed, distinct, distinct_labels
from augcam.config.loading import SELECTION_KEY, describe_errors, read_source, set_dotted
from augcam.config.study_config import StudyConfig
from augcam.errors import ConfigError


class CandidateConfig(Section):
    """One candidate architecture: a model name (as `model.name` takes it) with its own optional
    settings; `label` names it in tables, figures and the selection directory."""

    name: str
    label: Name | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    target_layer: str | None = None
    weights: str | None = None
    image_size: PositiveInt | None = None  # None: the study's data.image_size

    @model_validator(mode="before")
    @classmethod
    def _from_short_form(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("name")
    @classmethod
    def _known_model(cls, name: str) -> str:
        from augcam.models import model_spec

        try:
            model_spec(name)
        except ConfigError as err:
            # A ValueError, so that the message names the candidate's field.
            raise ValueError(str(err).removeprefix("model.name: ")) from None
        return name

    @property
    def display(self) -> str:
        """The candidate's label: given, else its model name with `:` (not in a file name) as `-`."""
        return self.label or self.name.replace(":", "-")

    def model_section(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target_layer": self.target_layer,
            "params": dict(self.params),
            "weights": self.weights,
        }


class SelectionConfig(Section):
    name: Name
    description: str = ""
    study: StudyConfig
    candidates: list[CandidateConfig] = Field(min_length=1)
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1)
    tie_tolerance: NonNegativeFloat = Field(0.0, lt=1)

    @field_validator("candidates")
    @classmethod
    def _distinct_labels(cls, candidates: list[CandidateConfig]) -> list[CandidateConfig]:
        return distinct_labels(candidates, "candidate")

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        return distinct(seeds, "seeds")

    def candidate_study(self, candidate: CandidateConfig) -> StudyConfig:
        """The study with `candidate`'s model (and image size): what it is trained under here, and
        the study `chosen.yaml` holds when it is chosen."""
        data = self.study.model_dump()
        data["model"] = candidate.model_section()
        if candidate.image_size is not None:
            data["data"]["image_size"] = candidate.image_size
        where = f"candidates[{candidate.display}]"
        try:
            return StudyConfig.model_validate(data)
        except ValidationError as err:
            raise ConfigError(describe_errors(err, where)) from None
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None

    def resolved(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["study"] = self.study.resolved()
        return data


def load_selection(source: str | Path | dict, overrides: dict[str, Any] | None = None) -> SelectionConfig:
    """A validated SelectionConfig from a preset name, a YAML file or a dict; `study` may name a
    preset or a study file (relative to the selection file), which is read before the overrides
    (`study.training.epochs=2`) apply. Errors raise one ConfigError naming the file and the field."""
    data, origin = read_source(source, "selection file")
    if SELECTION_KEY not in data:
        raise ConfigError(
            f"{origin}: not an architecture selection (no `{SELECTION_KEY}` key); a study file runs with `augcam run`"
        )
    study = data.get("study")
    if isinstance(study, str):
        base = Path(source).parent if not isinstance(source, dict) and Path(source).exists() else Path(".")
        path = base / study if study.endswith((".yaml", ".yml")) else Path(study)
        try:
            data["study"], _ = read_source(str(path) if path.exists() else study, "study file")
        except ConfigError as err:
            raise ConfigError(f"{origin}: study: {err}") from None
    for dotted, value in (overrides or {}).items():
        set_dotted(data, dotted, value)
    try:
        return SelectionConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(describe_errors(err, origin, SelectionConfig)) from None
    except ConfigError as err:
        raise ConfigError(f"{origin}: {err}") from None
