"""What an executor is: where the models' chains run (augcam.pipeline.chain) and where their
checkpoints go. The stages plan the chains and store what they return; an executor only runs
them and reports progress."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from rich.console import Console

from augcam.config import StudyConfig
from augcam.pipeline.chain import ChainJob, ChainResult
from augcam.pipeline.plan import ModelRun

if TYPE_CHECKING:
    from augcam.pipeline.context import StageContext

OnResult = Callable[[ModelRun, ChainResult], None]


class Chains:
    """One stage's use of an executor (see Executor.chains)."""

    def __init__(self) -> None:
        # Model id → what the executor knows of where its chain ran (e.g. the cluster node), for the manifest.
        self.details: dict[str, dict] = {}

    def run(self, jobs: list[ChainJob], base_cams: dict[str, torch.Tensor] | None, on_result: OnResult) -> None:
        """Run the chains of `jobs` (`base_cams`: the baseline's CAM set, for the chains' metrics),
        calling `on_result` in this process with each one's result as it arrives."""
        raise NotImplementedError


class Executor:
    name: ClassVar[str]
    driver_device: torch.device  # where the stages that run in this process put their tensors
    where: str  # how messages name where the models train
    takes_address: ClassVar[bool] = False  # whether `--address` (a cluster to join) applies

    @classmethod
    def check_available(cls) -> None:
        """Raise an AugcamError if this executor cannot run here (e.g. an optional library is missing)."""

    @classmethod
    def for_config(cls, config: StudyConfig) -> Executor:
        """The executor for `config`, after the checks that need no data (e.g. the device exists)."""
        raise NotImplementedError

    def connect(self, address: str | None, console: Console) -> None:
        """Reach the machines the chains will run on (called once the study is prepared)."""

    def manifest_info(self) -> dict[str, Any] | None:
        """What manifest.json records about the executor under its name (None: nothing)."""
        return None

    def chains(self, ctx: StageContext, jobs: list[ChainJob]) -> AbstractContextManager[Chains]:
        """A context in which a stage runs `jobs` (in one or more `Chains.run` calls)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what `connect` took."""
