"""The pipeline of a study, as the package tree shows it:

prepare.py      config + data + model checked, data split, the plan of models   (PreparedStudy)
plan.py         the models of the plan and the key that names each               (ModelRun, model_key)
chain.py        one model's chain: train → CAM sets → metrics vs the baseline    (run_chain)
executors/      where the chains run: local (this process) or ray (a cluster)
stages/         the stages in run order, each declaring what it reads and writes (STAGES)
runner.py       take the run directory, run the stages, keep the manifest        (run_study)
"""

from augcam.pipeline.prepare import PreparedStudy, prepare, study_design_limits
from augcam.pipeline.runner import StudyResult, run_study
from augcam.pipeline.summary import summary_tables

__all__ = ["PreparedStudy", "StudyResult", "prepare", "run_study", "study_design_limits", "summary_tables"]
