"""The worker side of the Ray executor: the task that runs one model's chain, the hooks that send its
checkpoints and progress to the driver, and the coordinator actor on the driver's node that writes
those checkpoints into the run directory (augcam.pipeline.executors.ray is the driver side)."""

from __future__ import annotations

import os
from typing import Any

import torch

from augcam.atomic import atomic_path
from augcam.pipeline.chain import ChainJob, ChainResult, run_chain
from augcam.pipeline.plan import ModelRun
from augcam.pipeline.prepare import PreparedStudy, set_deterministic
from augcam.rundir import RunDir

# --- the task: one model's chain in a worker --------------------------------------------------------


class RayHooks:
    """The chain's checkpoints and progress, through the driver's coordinator actor."""

    def __init__(self, coordinator: Any):
        self.coordinator = coordinator

    def checkpoint(self, run: ModelRun) -> bytes | None:
        import ray

        return ray.get(self.coordinator.checkpoint.remote(run.model_id))

    def save_checkpoint(self, run: ModelRun, epochs_done: int, data: bytes) -> None:
        import ray

        ray.get(self.coordinator.save_checkpoint.remote(run.model_id, epochs_done, data))

    def epoch(self, run: ModelRun, row: dict) -> None:
        self.coordinator.epoch.remote(run.model_id, row["epoch"])

    def batch(self, run: ModelRun, images: int) -> None:
        pass

    def stage(self, run: ModelRun, name: str) -> None:
        self.coordinator.stage.remote(run.model_id, name)

    def cam_batch(self, run: ModelRun, images: int) -> None:
        pass


def chain_task(
    prepared: PreparedStudy,
    job: ChainJob,
    weights: dict | None,
    base_cams: dict | None,
    coordinator: Any,
    device_type: str,
    threads: int,
) -> ChainResult:
    """The body of one model's task on a worker: `run_chain` with the coordinator's hooks."""
    import ray

    # Ray starts workers with one thread; CPU results depend on the thread count, so use the driver's.
    torch.set_num_threads(threads)
    set_deterministic()
    device = torch.device(device_type)  # "cuda": the GPU Ray assigned to this task (CUDA_VISIBLE_DEVICES)
    run = prepared.all_runs[job.run_index]
    node = ray.util.get_node_ip_address()
    ray.get(coordinator.started.remote(run.model_id, os.getpid(), node, ray.get_runtime_context().get_node_id()))
    result = run_chain(prepared, job, RayHooks(coordinator), device, weights=weights, base_cams=base_cams)
    result.node, result.pid = node, os.getpid()
    return result


class Coordinator:
    """A Ray actor on the driver's node: writes each epoch's checkpoint into the run directory
    (atomically, the file the local executor writes), hands it back to a retried task, and keeps
    each model's status for the driver's progress display."""

    def __init__(self, root: str):
        self.run_dir = RunDir(root)
        self.models: dict[str, dict] = {}

    def _model(self, model_id: str) -> dict:
        return self.models.setdefault(model_id, {"state": "queued", "attempts": 0})

    def started(self, model_id: str, pid: int, node: str, node_id: str) -> None:
        model = self._model(model_id)
        model.update(state="train", pid=pid, node=node, node_id=node_id, epoch=None)
        model["attempts"] += 1

    def epoch(self, model_id: str, epoch: int) -> None:
        self._model(model_id)["epoch"] = epoch

    def stage(self, model_id: str, stage: str) -> None:
        self._model(model_id)["state"] = stage

    def save_checkpoint(self, model_id: str, epochs_done: int, data: bytes) -> None:
        with atomic_path(self.run_dir.checkpoint_file(model_id)) as tmp:
            tmp.write_bytes(data)
        self._model(model_id)["checkpoint_epoch"] = epochs_done

    def checkpoint(self, model_id: str) -> bytes | None:
        path = self.run_dir.checkpoint_file(model_id)
        return path.read_bytes() if path.exists() else None

    def snapshot(self) -> dict[str, dict]:
        return {model_id: dict(model) for model_id, model in self.models.items()}
