"""A stage of the pipeline: a name, what it reads and writes in the run directory, when it is
enabled, and its work. The runner (augcam.pipeline.runner) runs the stages in order and does the
bookkeeping common to all of them: timing, the manifest, and removing the tables of a stage that
the config turned off (an earlier run's table would be stale)."""

from __future__ import annotations

from typing import Any, ClassVar

from augcam.errors import AugcamError
from augcam.pipeline.context import StageContext


class Stage:
    name: ClassVar[str]
    # Run-directory paths, as RunDir spells them (e.g. "tables/metrics.parquet", "cams/<model_id>"):
    # what the stage needs from earlier stages, and what it leaves for later ones.
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    # Files under tables/ that the stage owns: removed when it is disabled.
    tables: ClassVar[tuple[str, ...]] = ()

    def enabled(self, ctx: StageContext) -> bool:
        return True

    def run(self, ctx: StageContext) -> dict[str, Any]:
        """Do the stage's work; returns what the manifest records about it besides its time."""
        raise NotImplementedError


class StudyStopped(AugcamError):
    """A stage finished its own work but the study cannot go on (e.g. the baseline failed to
    train): the runner records the stage with `record`, then the run ends with this message."""

    def __init__(self, message: str, record: dict[str, Any]):
        super().__init__(message)
        self.record = record
