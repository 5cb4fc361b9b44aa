"""Running a study's models on a Ray cluster: `augcam run STUDY --out DIR --executor ray [--address A]`.

The unit of work is one model's stage chain, run as one Ray task: train (from the model's last
epoch checkpoint if it has one) → its CAM sets → its per-image metrics against the baseline's CAMs.
The baseline's chain runs first; every other model of the plan (augmentations, the identity
control, baseline replicas, the permuted-labels model) then fans out, each task asking the cluster
for `resources.cpus_per_model` CPUs and `resources.gpus_per_model` of a GPU.

The tasks run the same per-model functions as the local executor (`augcam.study.train_one_model`,
`compute_cam_set`, `compare_cam_sets`), in a worker process that uses the driver's torch thread
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
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from augcam.errors import AugcamError
from augcam.store import RunDir, atomic_path, read_tensors, write_tensors

if TYPE_CHECKING:
    from augcam.config import StudyConfig
    from augcam.study import ModelRun, PreparedStudy, Runner

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
    from augcam.config import digest

    return "augcam-coordinator-" + digest(os.path.realpath(root))[:16]


def check_address(address: str | None) -> None:
    """Refuse an address that cannot work, before Ray would wait minutes for it."""
    if address in (None, "auto", "local"):
        return
    if address.startswith("ray://"):
        raise AugcamError(f"--address {address}: Ray Client addresses (ray://) are not supported, because the "
                          "driver writes the run directory on its own node; run augcam on a node of the cluster "
                          "(e.g. the head) with --address auto, or submit it with `ray job submit`")
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise AugcamError(f"--address {address!r}: expected auto or HOST:PORT of the cluster's head node "
                          "(its GCS port, 6379 by default)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as err:
        raise AugcamError(f"--address {address}: cannot reach a Ray cluster there ({err.strerror or err}); "
                          "check the address, or start one with `ray start --head`") from None


# --- the task: one model's stage chain ------------------------------------------------------------


@dataclass
class ChainJob:
    """What one model's task does: train it (unless `weights` of a finished model are given),
    compute the CAM sets of `cam_methods` (None: the study's method), and, if `compare`, its
    metrics against the baseline's CAM set."""

    run_index: int
    train: bool
    cam_methods: list[str | None] = field(default_factory=list)
    compare: bool = False


@dataclass
class ChainResult:
    outcome: Any = None  # augcam.study.TrainOutcome, when the task trained the model
    cams: dict = field(default_factory=dict)  # method (None: the study's) → (tensors, metadata)
    metrics: dict | None = None  # metric → per-image values against the baseline
    node: str = ""
    pid: int = 0


def model_chain(prepared: "PreparedStudy", job: ChainJob, weights: dict | None, base_cams: dict | None,
                coordinator: Any, device_type: str, threads: int) -> ChainResult:
    """The body of one model's task on a worker (see the module docstring)."""
    import ray

    from augcam.study import (compute_cam_set, study_cam_metrics, kill_point, load_model, set_deterministic,
                              train_one_model)
    from augcam.train import train_state_from_bytes, train_state_to_bytes

    # Ray starts workers with one thread; CPU results depend on the thread count, so use the driver's.
    torch.set_num_threads(threads)
    set_deterministic()
    device = torch.device(device_type)  # "cuda": the GPU Ray assigned to this task (CUDA_VISIBLE_DEVICES)
    run = prepared.all_runs[job.run_index]
    identity = {"model_id": run.model_id}
    node = ray.util.get_node_ip_address()
    ray.get(coordinator.started.remote(run.model_id, os.getpid(), node, ray.get_runtime_context().get_node_id()))
    result = ChainResult(node=node, pid=os.getpid())
    if job.train:
        resume = None
        stored = ray.get(coordinator.checkpoint.remote(run.model_id))
        if stored is not None:
            try:
                resume = train_state_from_bytes(stored, identity)
            except ValueError:
                resume = None  # the driver said so already: trained from its first epoch

        def on_checkpoint(state) -> None:
            ray.get(coordinator.save_checkpoint.remote(run.model_id, state.epochs_done,
                                                       train_state_to_bytes(state, identity)))
            kill_point("train", job.run_index, state.epochs_done)

        def on_epoch(row: dict) -> None:
            coordinator.epoch.remote(run.model_id, row["epoch"])

        outcome = train_one_model(prepared, run, device, resume, on_epoch=on_epoch, on_checkpoint=on_checkpoint)
        if outcome.best_state is not None:
            outcome.best_state = {k: v.cpu() for k, v in outcome.best_state.items()}
        result.outcome = outcome
        if outcome.status != "complete":
            return result
        weights = outcome.best_state
    if job.cam_methods:
        coordinator.stage.remote(run.model_id, "explain")
        model = load_model(prepared, weights, device)
        for method in job.cam_methods:
            result.cams[method] = compute_cam_set(
                prepared, run, model, device, method,
                after_batch=lambda number, size: kill_point("explain", job.run_index, number))
    if job.compare and base_cams is not None and None in result.cams:
        result.metrics = study_cam_metrics(prepared.config, base_cams, result.cams[None][0], prepared.input_size,
                                           device)
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


# --- the driver side -------------------------------------------------------------------------------


class RayExecutor:
    """Stages 1–2 of a study (train, explain) as one task per model on a Ray cluster."""

    name = "ray"

    def __init__(self, config: "StudyConfig"):
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

    @classmethod
    def check(cls, config: "StudyConfig") -> "RayExecutor":
        """Config-level checks (Ray installed, a device Ray can schedule), before data is loaded."""
        if config.device == "mps":
            raise AugcamError("device 'mps' cannot be used with --executor ray (Ray schedules CPUs and CUDA "
                              "GPUs); use device cpu, cuda or auto")
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
                raise AugcamError(f"--address {address}: no running Ray cluster found {where} ({err}); start one "
                                  "with `ray start --head`, or leave out --address to start a local one") from None
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
        self.driver_device = torch.device("cuda" if self.model_device == "cuda" and torch.cuda.is_available()
                                          else "cpu")
        largest = {kind: max((node["Resources"].get(kind, 0) for node in nodes), default=0) for kind in ("CPU", "GPU")}
        wanted = {"CPU": r.cpus_per_model, "GPU": gpus}
        short = [f"{kind.lower()}s_per_model {wanted[kind]:g} (the largest node has {largest[kind]:g} {kind})"
                 for kind in ("CPU", "GPU") if wanted[kind] > largest[kind]]
        if short:
            message = f"resources: no node of the Ray cluster can run a model: {'; '.join(short)}"
            if self.started_cluster:
                raise AugcamError(message)
            console.print(f"[yellow]warning[/]: {message}; the tasks wait until such a node joins", highlight=False)
        self.info = {
            "address": self.address, "started_local_cluster": self.started_cluster, "ray_version": ray.__version__,
            "nodes": [{"node_ip": node["NodeManagerAddress"], "resources": {
                k: v for k, v in node["Resources"].items() if k in ("CPU", "GPU", "memory")}} for node in nodes],
            "cluster_resources": {k: v for k, v in total.items() if k in ("CPU", "GPU", "memory", "object_store_memory")},
            "cpus_per_model": r.cpus_per_model, "gpus_per_model": gpus, "max_retries": r.max_retries,
            "model_device": self.model_device, "worker_torch_threads": self.threads,
        }
        console.print(f"[bold]ray[/]: {'started a local cluster' if self.started_cluster else 'connected to'} "
                      f"{self.address} — {len(nodes)} node(s), {total.get('CPU', 0):g} CPUs, {total.get('GPU', 0):g} GPUs; "
                      f"each model asks for {r.cpus_per_model:g} CPU(s) and {gpus:g} GPU(s), trains on "
                      f"{self.model_device} with {self.threads} torch thread(s)", highlight=False)

    def manifest_info(self) -> dict[str, Any]:
        return dict(self.info)

    def close(self) -> None:
        if self.owns_connection and self.ray.is_initialized():
            self.ray.shutdown()

    # --- stages 1 and 2 ---------------------------------------------------------------------------

    def train_and_explain(self, runner: "Runner") -> list["ModelRun"]:
        """Train every model still to train and compute every CAM set still to compute, one task per
        model, the baseline's first; store what comes back; record stages train and explain."""
        ray = self.ray
        p, run_dir = runner.p, runner.run_dir
        started = runner._stage_started("train")
        runner._stage_started("explain")
        where = f"ray ({self.model_device}, {len(self.info['nodes'])} node(s))"
        plan = runner.training_plan(where)
        failed_before = {mid for mid, meta in plan.finished.items() if meta.get("status") != "complete"}
        candidates = [run for run in p.all_runs if run.model_id not in failed_before]
        cam_jobs, cams_reused = runner.cam_jobs(candidates)
        methods: dict[str, list[str | None]] = {}
        for run, method in cam_jobs:
            methods.setdefault(run.model_id, []).append(method)
        todo_ids = {run.model_id for run in plan.todo}
        jobs = {run.model_id: ChainJob(p.all_runs.index(run), run.model_id in todo_ids, methods.get(run.model_id, []),
                                       compare=not run.is_baseline)
                for run in candidates if run.model_id in todo_ids or run.model_id in methods}
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from augcam.study import KILL_AT_ENV

        # On the driver's node, so that it writes into the run directory the driver owns.
        coordinator = ray.remote(Coordinator).options(
            name=coordinator_name(run_dir.root), num_cpus=0, max_restarts=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        ).remote(str(run_dir.root.resolve()))
        task = ray.remote(model_chain)
        options: dict[str, Any] = {"num_cpus": self.config.resources.cpus_per_model, "num_gpus": self.gpus,
                                   "max_retries": self.config.resources.max_retries}
        if os.environ.get(KILL_AT_ENV):  # the test-only hook reaches the workers' kill points too
            options["runtime_env"] = {"env_vars": {KILL_AT_ENV: os.environ[KILL_AT_ENV]}}
        computed = 0
        details: dict[str, dict] = {}
        pending: dict[Any, "ModelRun"] = {}
        try:
            prepared_ref = ray.put(p)

            def submit(run: "ModelRun", base_ref: Any) -> None:
                job = jobs[run.model_id]
                weights = None if job.train else ray.put(read_tensors(run_dir.weights_file(run.model_id)))
                ref = task.options(**options).remote(prepared_ref, job, weights, base_ref, coordinator,
                                                     self.model_device, self.threads)
                pending[ref] = run

            with _progress(runner.console, disable=not jobs) as progress:
                bar = progress.add_task("models", total=max(len(jobs), 1), status="")
                baseline = p.baseline
                if baseline.model_id in jobs:
                    submit(baseline, None)
                    computed += self._collect(runner, pending, coordinator, progress, bar, details)
                if (runner._meta(baseline) or {}).get("status") != "complete":
                    return runner.finish_training(started, plan, details)  # raises: the baseline failed
                base_ref = ray.put(read_tensors(run_dir.cams_file(baseline.model_id)))
                for run in candidates:
                    if run.model_id in jobs and run != baseline:
                        submit(run, base_ref)
                computed += self._collect(runner, pending, coordinator, progress, bar, details)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            ray.kill(coordinator)
        complete = runner.finish_training(started, plan, details)
        runner._stage("explain", "complete", time.perf_counter() - started, computed=computed, reused=cams_reused,
                      chained_with_train=True)
        return complete

    def _collect(self, runner: "Runner", pending: dict, coordinator: Any, progress: Progress, bar: Any,
                 details: dict[str, dict]) -> int:
        """Wait for every pending task, storing each result as it arrives; the CAM sets stored."""
        ray = self.ray
        epochs = runner.config.training.epochs
        computed = 0
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
                        f"{run.label}: its task failed {self.config.resources.max_retries + 1} time(s) "
                        f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); rerun the "
                        "command to resume from its last checkpoint") from None
                computed += self._store(runner, run, result)
                progress.advance(bar)
            status = ray.get(coordinator.snapshot.remote())
            for model_id, model in status.items():
                details.setdefault(model_id, {}).update(
                    {"node": model.get("node"), "node_id": model.get("node_id"), "attempts": model.get("attempts")})
            running = [f"{self._label(runner, mid)} {self._state(m, epochs)}" for mid, m in status.items()
                       if any(r.model_id == mid for r in pending.values()) and m.get("state") != "queued"]
            queued = len(pending) - len(running)
            progress.update(bar, status=f"running {len(running)}" + (f" ({', '.join(running[:4])}"
                                                                     f"{', …' if len(running) > 4 else ''})" if running else "")
                            + f" · queued {queued}")
        return computed

    @staticmethod
    def _label(runner: "Runner", model_id: str) -> str:
        return next((run.label for run in runner.p.all_runs if run.model_id == model_id), model_id)

    @staticmethod
    def _state(model: dict, epochs: int) -> str:
        where = f" @{model['node']}" if model.get("node") else ""
        retry = f" try {model['attempts']}" if model.get("attempts", 0) > 1 else ""
        if model.get("state") == "explain":
            return f"CAMs{where}{retry}"
        epoch = model.get("epoch") or 0
        return f"epoch {min(epoch + 1, epochs)}/{epochs}{where}{retry}"

    def _store(self, runner: "Runner", run: "ModelRun", result: ChainResult) -> int:
        """Write what a task returned into the run directory, as the local executor would have."""
        from augcam.study import store_trained

        run_dir = runner.run_dir
        if result.outcome is not None:
            runner.report_trained(run, result.outcome, where=f" on {result.node}")
            store_trained(run_dir, run, result.outcome)
        for method, (tensors, metadata) in result.cams.items():
            write_tensors(run_dir.cams_file(run.model_id, method), tensors, metadata=metadata)
        if result.metrics is not None:
            runner.vs_baseline[run.model_id] = result.metrics
        return len(result.cams)


def _progress(console: Console, disable: bool = False) -> Progress:
    """Models done / all, and what the cluster is doing: the models running (epoch, node) and queued."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[status]}"), console=console, transient=False, disable=disable)
