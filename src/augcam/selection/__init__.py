"""Architecture selection (`augcam select`, the reference study's step 2): candidate models trained
as a study's baseline, their per-epoch validation and test scores, the rule that chooses one on
validation data alone, and `chosen.yaml`, the study with the chosen model.

- `runner`: the candidates prepared (one model per seed, test set monitored) and trained through
  the study's own stage functions and executors.
- `tables`: the per-epoch and per-candidate tables, and the rule (`choose`).
- `stages`: tables and chosen.yaml, then figures and report.html (`report`).
- `api`: `select`, the entry point.
"""

from augcam.selection.api import select
from augcam.selection.runner import SelectionResult
from augcam.selection.runner import prepare_candidates as prepare_selection
from augcam.selection.tables import choose, summarise

__all__ = ["select", "prepare_selection", "SelectionResult", "choose", "summarise"]
