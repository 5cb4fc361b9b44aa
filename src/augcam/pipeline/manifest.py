"""manifest.json: what ran, with which versions and settings, how each stage ended and how long it took.

The runner writes it after every stage change, so a killed run's manifest says where it stopped
("status": "running"), and the next run of the directory records that as its `previous_run`.
"""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd
import torch
from rich.console import Console

from augcam import __version__
from augcam.atomic import DamagedFileError, read_sealed_json, sealed, write_json
from augcam.pipeline.kill_points import kill_point
from augcam.pipeline.plan import TRAINING_CODE_VERSION
from augcam.pipeline.prepare import PreparedStudy
from augcam.rundir import RunDir


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def versions() -> dict[str, str]:
    import kornia
    import pyarrow
    import pydantic
    import safetensors
    import torchvision

    return {
        "augcam": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "kornia": kornia.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "pyarrow": pyarrow.__version__,
        "safetensors": safetensors.__version__,
        "pydantic": pydantic.__version__,
    }


def deterministic_flags() -> dict[str, Any]:
    return {
        "use_deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "torch_threads": torch.get_num_threads(),
    }


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()


class Manifest(dict):
    """The run's manifest.json, written through on every change."""

    def __init__(
        self,
        run_dir: RunDir,
        prepared: PreparedStudy,
        device: torch.device,
        executor: str,
        executor_info: dict[str, Any] | None,
        console: Console,
    ):
        config = prepared.config
        super().__init__(
            {
                "augcam_version": __version__,
                "study": config.name,
                "config_hash": config.config_hash(),
                "training_code_version": TRAINING_CODE_VERSION,
                "versions": versions(),
                "device": str(device),
                "device_name": device_name(device),
                "host": platform.node(),
                "pid": os.getpid(),
                "torch_threads": torch.get_num_threads(),
                "deterministic": deterministic_flags(),
                "seeds": {
                    "split": config.data.split_seed,
                    "init": config.training.init_seed,
                    "ordering": config.training.ordering_seed,
                    "augmentation": config.seeds,
                },
                "data": {"fingerprint": prepared.data_fingerprint, "test_fingerprint": prepared.test_fingerprint},
                "model": prepared.model_info,
                "started": now(),
                "status": "running",
                "stages": {},
                "models": {},
                "executor": executor,
            }
        )
        if executor_info is not None:
            self[executor] = executor_info
        self._open(run_dir, console)

    @classmethod
    def of_record(cls, run_dir: RunDir, record: dict[str, Any], console: Console) -> Manifest:
        """A manifest holding `record` (and what every manifest holds: augcam's version, the
        package versions, host, start, status, stages) for a directory that is not one study's run
        (an architecture selection's)."""
        manifest = cls.__new__(cls)
        dict.__init__(
            manifest,
            {
                "augcam_version": __version__,
                **record,
                "versions": versions(),
                "host": platform.node(),
                "pid": os.getpid(),
                "torch_threads": torch.get_num_threads(),
                "deterministic": deterministic_flags(),
                "started": now(),
                "status": "running",
                "stages": {},
            },
        )
        manifest._open(run_dir, console)
        return manifest

    def _open(self, run_dir: RunDir, console: Console) -> None:
        self.path = run_dir.manifest_file
        previous = self._previous(console)
        if previous is not None:
            # What the last run of this directory left: "running" means it was killed.
            self["previous_run"] = {key: previous.get(key) for key in ("started", "finished", "status")}

    def _previous(self, console: Console) -> dict | None:
        if not self.path.exists():
            return None
        try:
            return read_sealed_json(self.path)[0]
        except DamagedFileError as err:
            console.print(f"[yellow]{self.path}: damaged manifest of the previous run ({err.why}); replacing it[/]")
            return None

    def write(self) -> None:
        write_json(self.path, sealed(dict(self)))

    def stage_started(self, name: str) -> None:
        self["stages"][name] = {"status": "running", "started": now()}
        self.write()

    def stage_finished(self, name: str, seconds: float, **extra: Any) -> None:
        started = self["stages"].get(name, {}).get("started")
        self["stages"][name] = {"status": "complete", "started": started, "seconds": round(seconds, 3), **extra}
        self.write()
        kill_point("stage", name)

    def ended(self, status: str, error: BaseException | None = None) -> None:
        """Record how the run ended: complete, failed or interrupted (with the error)."""
        self["status"] = status
        if error is not None:
            self["error"] = f"{type(error).__name__}: {error}"
        self["finished"] = now()
        self.write()
