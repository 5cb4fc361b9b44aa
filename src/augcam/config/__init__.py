"""Study configuration: one YAML file (or a preset name) → a validated `StudyConfig`.

- `base_section`: what every section shares (`Section`); `sections`: one pydantic model per section
  of a study file (`data`, `model`, `training`, `controls`, ...); `explain_sections`: `cam`, `metrics`,
  `faithfulness`.
- `study_config`: `StudyConfig`, the whole file, with its resolved form and hash.
- `selection`: an architecture selection file (`SelectionConfig`, `load_selection`).
- `loading`: presets, YAML parsing, overrides and the error messages that name file and field.
- `checks`: value checks shared by the sections, the loader and the executors.
"""

from augcam.config.base_section import Section
from augcam.config.checks import check_device_name, digest, distinct, distinct_percentages, gpus_device_conflict
from augcam.config.explain_sections import CamConfig, FaithfulnessConfig, MetricsConfig
from augcam.config.loading import (
    is_selection,
    load_config,
    parse_overrides,
    preset_names,
    preset_summary,
    preset_text,
    with_device,
)
from augcam.config.sections import (
    RECIPE_FIELDS,
    AugmentationConfig,
    BaseAugmentationConfig,
    ControlsConfig,
    DataConfig,
    GuidedConfig,
    ModelConfig,
    ResourcesConfig,
    TrainingConfig,
)
from augcam.config.selection import CandidateConfig, SelectionConfig, load_selection
from augcam.config.study_config import StudyConfig

__all__ = [
    "StudyConfig",
    "load_config",
    "SelectionConfig",
    "CandidateConfig",
    "load_selection",
    "is_selection",
    "parse_overrides",
    "with_device",
    "preset_names",
    "preset_text",
    "preset_summary",
    "Section",
    "DataConfig",
    "ModelConfig",
    "AugmentationConfig",
    "BaseAugmentationConfig",
    "TrainingConfig",
    "GuidedConfig",
    "CamConfig",
    "MetricsConfig",
    "FaithfulnessConfig",
    "ControlsConfig",
    "ResourcesConfig",
    "RECIPE_FIELDS",
    "digest",
    "distinct",
    "distinct_percentages",
    "gpus_device_conflict",
    "check_device_name",
]
