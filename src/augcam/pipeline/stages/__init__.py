"""The stages of a run, in the order they run. Stages 1–3 have a per-model part — train the model,
compute its CAM sets, compare them with the baseline's — that the executor runs as one chain per
model (augcam.pipeline.chain); every stage then finishes in the process that owns the run
directory, from what the directory holds.

     1 train          models/<id>/ (weights, history, meta) — and, chained, the CAM sets
     2 explain        cams/<id>.safetensors
     3 compare        tables/metrics.parquet (+ method_metrics.parquet)
     4 performance    tables/performance.parquet
     5 localisation   tables/localisation.parquet          (datasets with ROI masks)
     6 aggregate      tables/aggregated.parquet
     7 controls       tables/noise_floor.parquet, between_augmentations.parquet
     8 sanity         tables/sanity.csv                    (controls.sanity_images > 0)
     9 faithfulness   tables/faithfulness*.parquet         (faithfulness.enabled)
    10 report         tables/*.csv, figures/, report.html

A new stage is a `Stage` subclass in a module of this package, placed in `STAGES` where its
inputs exist.
"""

from augcam.pipeline.stages.aggregate import AggregateStage
from augcam.pipeline.stages.base import Stage, StudyStopped
from augcam.pipeline.stages.check_faithfulness import FaithfulnessStage
from augcam.pipeline.stages.check_sanity import SanityStage
from augcam.pipeline.stages.compare import CompareStage
from augcam.pipeline.stages.controls import ControlsStage
from augcam.pipeline.stages.evaluate import EvaluateStage
from augcam.pipeline.stages.explain import ExplainStage
from augcam.pipeline.stages.localise import LocaliseStage
from augcam.pipeline.stages.reporting import ReportStage
from augcam.pipeline.stages.train import TrainStage

STAGES: tuple[Stage, ...] = (
    TrainStage(),
    ExplainStage(),
    CompareStage(),
    EvaluateStage(),
    LocaliseStage(),
    AggregateStage(),
    ControlsStage(),
    SanityStage(),
    FaithfulnessStage(),
    ReportStage(),
)

__all__ = ["STAGES", "Stage", "StudyStopped"]
