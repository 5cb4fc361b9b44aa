"""Running a study's models on a Ray cluster: `augcam run STUDY --out DIR --executor ray [--address A]`.

The unit of work is one model's stage chain, run as one Ray task: train (from the model's last
epoch checkpoint if it has one) → its CAM sets → its per-image metrics against the baseline's CAMs.
The baseline's chain runs first; every other model of the plan (augmentations, the identity
control, baseline replicas, the permuted-labels model) then fans out, each task asking the cluster
for `resources.cpus_per_model` CPUs and `resources.gpus_per_model` of a GPU.

The tasks run the same chain function as the local executor (`augcam.pipeline.chain.run_chain`),
in a worker process that uses the driver's torch thread
count (CPU results depend on it), so the tables equal the local executor's on the same kind of
device. Workers need no shared filesystem: the prepared study (data included) goes to them through
Ray's object store, and what they make (weights, history, CAM sets, metrics) comes back as task
results; the driver — the `augcam run` process — owns the run directory and writes every file.

Fault tolerance: a small actor on the driver's node (`Coordinator`) receives each epoch's
checkpoint from the worker and writes it atomically to `models/<id>/checkpoint.safetensors`, as
the local executor does. A task whose worker process or node dies is retried by Ray
(`resources.max_retries`) and asks the coordinator for that checkpoint, so it resumes at its last
finished epoch. A killed driver takes its tasks with it; rerunning the command reuses the
finished models and resumes the others from the checkpoints on disk, as in the local case.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from augcam.config import StudyConfig, digest
from augcam.errors import AugcamError
from augcam.pipeline.chain import ChainJob
from augcam.pipeline.executors.base import Chains, Executor, OnResult
from augcam.pipeline.executors.ray_worker import Coordinator, chain_task
from augcam.pipeline.kill_points import KILL_AT_ENV
from augcam.pipeline.plan import ModelRun

if TYPE_CHECKING:
    from augcam.pipeline.context import StageContext

INSTALL_HINT = "pip install 'augcam[ray]'"
POLL_SECONDS = 0.25


def import_ray():
    """The `ray` module, or a one-line AugcamError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise AugcamError(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def coordinator_name(root: str | os.PathLike) -> str:
    """The name of a run's coordinator actor (tests find running tasks' worker pids through it)."""
    return "augcam-coordinator-" + digest(os.path.realpath(root))[:16]


def check_address(address: str | None) -> None:
    """Refuse an address that cannot work, before Ray would wait minutes for it."""
    if address in (None, "auto", "local"):
        return
    if address.startswith("ray://"):
        raise AugcamError(
            f"--address {address}: Ray Client addresses (ray://) are not supported, because the "
            "driver writes the run directory on its own node; run augcam on a node of the cluster "
            "(e.g. the head) with --address auto, or submit it with `ray job submit`"
        )
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise AugcamError(
            f"--address {address!r}: expected auto or HOST:PORT of the cluster's head node "
            "(its GCS port, 6379 by default)"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as err:
        raise AugcamError(
            f"--address {address}: cannot reach a Ray cluster there ({err.strerror or err}); "
            "check the address, or start one with `ray start --head`"
        ) from None


# --- the driver side -------------------------------------------------------------------------------


class RayExecutor(Executor):
    """Every model's chain as one task on a Ray cluster; the driver (this process) stores the results."""

    name = "ray"
    takes_address = True

    def __init__(self, config: StudyConfig):
        self.config = config
        self.ray = import_ray()
        self.owns_connection = False
        self.started_cluster = False
        self.address: str | None = None
        self.info: dict[str, Any] = {}
        self.model_device = "cpu"
        self.gpus = 0.0
        self.driver_device = torch.device("cpu")
        self.threads = torch.get_num_threads()
        self.where = "ray"

    @classmethod
    def check_available(cls) -> None:
        import_ray()

    @classmethod
    def for_config(cls, config: StudyConfig) -> RayExecutor:
        """Config-level checks (Ray installed, a device Ray can schedule), before data is loaded."""
        if config.device == "mps":
            raise AugcamError(
                "device 'mps' cannot be used with --executor ray (Ray schedules CPUs and CUDA "
                "GPUs); use device cpu, cuda or auto"
            )
        return cls(config)

    def connect(self, address: str | None, console: Console) -> None:
        """Join the cluster at `address` (None: start a local one, unless this process is already
        connected), and decide each model's device and resources."""
        ray = self.ray
        check_address(address)
        if ray.is_initialized():
            self.owns_connection = False
        else:
            options: dict[str, Any] = {"include_dashboard": False} if address is None else {}
            try:
                ray.init(address=address or "local", logging_level=logging.WARNING, log_to_driver=False, **options)
            except ConnectionError as err:
                where = "on this machine" if address == "auto" else f"at {address}"
                raise AugcamError(
                    f"--address {address}: no running Ray cluster found {where} ({err}); start one "
                    "with `ray start --head`, or leave out --address to start a local one"
                ) from None
            self.owns_connection = True
            self.started_cluster = address is None
        context = ray.get_runtime_context()
        self.address = context.gcs_address
        nodes = [node for node in ray.nodes() if node.get("Alive")]
        total = ray.cluster_resources()
        r = self.config.resources
        device = self.config.device
        gpus = r.gpus_per_model
        if gpus is None:
            gpus = 1.0 if device.startswith("cuda") or (device == "auto" and total.get("GPU", 0) > 0) else 0.0
        self.gpus = gpus
        self.model_device = "cuda" if gpus > 0 else "cpu"
        self.driver_device = torch.device(
            "cuda" if self.model_device == "cuda" and torch.cuda.is_available() else "cpu"
        )
        largest = {kind: max((node["Resources"].get(kind, 0) for node in nodes), default=0) for kind in ("CPU", "GPU")}
        wanted = {"CPU": r.cpus_per_model, "GPU": gpus}
        short = [
            f"{kind.lower()}s_per_model {wanted[kind]:g} (the largest node has {largest[kind]:g} {kind})"
            for kind in ("CPU", "GPU")
            if wanted[kind] > largest[kind]
        ]
        if short:
            message = f"resources: no node of the Ray cluster can run a model: {'; '.join(short)}"
            if self.started_cluster:
                raise AugcamError(message)
            console.print(f"[yellow]warning[/]: {message}; the tasks wait until such a node joins", highlight=False)
        self.info = {
            "address": self.address,
            "started_local_cluster": self.started_cluster,
            "ray_version": ray.__version__,
            "nodes": [
                {
                    "node_ip": node["NodeManagerAddress"],
                    "resources": {k: v for k, v in node["Resources"].items() if k in ("CPU", "GPU", "memory")},
                }
                for node in nodes
            ],
            "cluster_resources": {
                k: v for k, v in total.items() if k in ("CPU", "GPU", "memory", "object_store_memory")
            },
            "cpus_per_model": r.cpus_per_model,
            "gpus_per_model": gpus,
            "max_retries": r.max_retries,
            "model_device": self.model_device,
            "worker_torch_threads": self.threads,
        }
        self.where = f"ray ({self.model_device}, {len(nodes)} node(s))"
        console.print(
            f"[bold]ray[/]: {'started a local cluster' if self.started_cluster else 'connected to'} "
            f"{self.address} — {len(nodes)} node(s), {total.get('CPU', 0):g} CPUs, {total.get('GPU', 0):g} GPUs; "
            f"each model asks for {r.cpus_per_model:g} CPU(s) and {gpus:g} GPU(s), trains on "
            f"{self.model_device} with {self.threads} torch thread(s)",
            highlight=False,
        )

    def manifest_info(self) -> dict[str, Any]:
        return dict(self.info)

    def close(self) -> None:
        if self.owns_connection and self.ray.is_initialized():
            self.ray.shutdown()

    @contextmanager
    def chains(self, ctx: StageContext, jobs: list[ChainJob]) -> Iterator[RayChains]:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ray = self.ray
        # On the driver's node, so that it writes into the run directory the driver owns.
        coordinator = (
            ray.remote(Coordinator)
            .options(
                name=coordinator_name(ctx.run_dir.root),
                num_cpus=0,
                max_restarts=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False),
            )
            .remote(str(ctx.run_dir.root.resolve()))
        )
        chains = RayChains(self, ctx, coordinator)
        try:
            with _progress(ctx.console, disable=not jobs) as progress:
                chains.progress = progress
                chains.bar = progress.add_task("models", total=max(len(jobs), 1), status="")
                yield chains
        finally:
            for ref in chains.pending:
                ray.cancel(ref, force=True)
            ray.kill(coordinator)


class RayChains(Chains):
    def __init__(self, executor: RayExecutor, ctx: StageContext, coordinator: Any):
        super().__init__()
        self.executor = executor
        self.ray = executor.ray
        self.ctx = ctx
        self.coordinator = coordinator
        self.pending: dict[Any, ModelRun] = {}
        self.progress: Progress | None = None
        self.bar: Any = None
        self._prepared_ref: Any = None
        options: dict[str, Any] = {
            "num_cpus": ctx.config.resources.cpus_per_model,
            "num_gpus": executor.gpus,
            "max_retries": ctx.config.resources.max_retries,
        }
        if os.environ.get(KILL_AT_ENV):  # the test-only hook reaches the workers' kill points too
            options["runtime_env"] = {"env_vars": {KILL_AT_ENV: os.environ[KILL_AT_ENV]}}
        self.task = self.ray.remote(chain_task).options(**options)

    def run(self, jobs: list[ChainJob], base_cams: dict[str, torch.Tensor] | None, on_result: OnResult) -> None:
        ray, ctx = self.ray, self.ctx
        if not jobs:
            return
        if self._prepared_ref is None:
            self._prepared_ref = ray.put(ctx.prepared)
        base_ref = ray.put(base_cams) if base_cams is not None else None
        for job in jobs:
            run = ctx.prepared.all_runs[job.run_index]
            weights = None if job.train else ray.put(ctx.weights(run))
            ref = self.task.remote(
                self._prepared_ref,
                job,
                weights,
                base_ref,
                self.coordinator,
                self.executor.model_device,
                self.executor.threads,
            )
            self.pending[ref] = run
        self._collect(on_result)

    def _collect(self, on_result: OnResult) -> None:
        """Wait for every pending task, handing each result to `on_result` as it arrives."""
        ray, ctx, pending, progress = self.ray, self.ctx, self.pending, self.progress
        epochs = ctx.config.training.epochs
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=POLL_SECONDS)
            for ref in ready:
                run = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayTaskError as err:
                    cause = err.as_instanceof_cause()
                    if isinstance(getattr(err, "cause", None), AugcamError):
                        raise AugcamError(f"{run.label}: {err.cause}") from None
                    raise cause from None
                except ray.exceptions.RayError as err:
                    raise AugcamError(
                        f"{run.label}: its task failed {ctx.config.resources.max_retries + 1} time(s) "
                        f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); rerun the "
                        "command to resume from its last checkpoint"
                    ) from None
                on_result(run, result)
                progress.advance(self.bar)
            status = ray.get(self.coordinator.snapshot.remote())
            for model_id, model in status.items():
                self.details.setdefault(model_id, {}).update(
                    {"node": model.get("node"), "node_id": model.get("node_id"), "attempts": model.get("attempts")}
                )
            running = [
                f"{self._label(ctx, mid)} {self._state(m, epochs)}"
                for mid, m in status.items()
                if any(r.model_id == mid for r in pending.values()) and m.get("state") != "queued"
            ]
            queued = len(pending) - len(running)
            progress.update(
                self.bar,
                status=f"running {len(running)}"
                + (f" ({', '.join(running[:4])}{', …' if len(running) > 4 else ''})" if running else "")
                + f" · queued {queued}",
            )

    @staticmethod
    def _label(ctx: StageContext, model_id: str) -> str:
        return next((run.label for run in ctx.prepared.all_runs if run.model_id == model_id), model_id)

    @staticmethod
    def _state(model: dict, epochs: int) -> str:
        where = f" @{model['node']}" if model.get("node") else ""
        retry = f" try {model['attempts']}" if model.get("attempts", 0) > 1 else ""
        if model.get("state") == "explain":
            return f"CAMs{where}{retry}"
        epoch = model.get("epoch") or 0
        return f"epoch {min(epoch + 1, epochs)}/{epochs}{where}{retry}"


def _progress(console: Console, disable: bool = False) -> Progress:
    """Models done / all, and what the cluster is doing: the models running (epoch, node) and queued."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=False,
        disable=disable,
    )
