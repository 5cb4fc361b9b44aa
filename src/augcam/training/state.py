"""Training state: what an interrupted training needs to go on bit-identically, and its file.

`TrainState` holds everything the remaining epochs depend on (weights and buffers, optimizer
state, best-so-far state, history, global RNG state). On disk it is one safetensors file: the
tensors (weights, optimizer moments, best-so-far weights, RNG states) under prefixed names,
everything else as JSON in the file's metadata. One file keeps the checkpoint atomic (written
temp-then-rename) without pickle.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

STATE_FORMAT = 1


@dataclass
class TrainState:
    """Training after `epochs_done` epochs: enough to run the remaining epochs exactly as an
    uninterrupted run would."""

    epochs_done: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]  # torch.optim state_dict
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_val_accuracy: float
    history: list[dict]
    rng: dict[str, torch.Tensor]  # global RNG states: "cpu", and "cuda" when training on a GPU
    initial_digest: str
    seconds: float  # training time spent so far, over every session
    # Every finished epoch's predictions on the sets the loop monitors ("val", "test" → (epochs, N));
    # empty for a study's model, whose loop monitors none.
    predictions: dict[str, torch.Tensor] = field(default_factory=dict)


def state_digest(model: nn.Module) -> str:
    """SHA-256 over the model's parameters and buffers (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def capture_rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The global RNG states a training on `device` draws from."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_train_state(path: Path, state: TrainState, identity: dict[str, Any]) -> None:
    """Write `state` atomically; `identity` (e.g. the model id) is stored to be checked on load."""
    from augcam.atomic import write_tensors

    tensors, metadata = _state_tensors(state, identity)
    write_tensors(path, tensors, metadata=metadata)


def train_state_to_bytes(state: TrainState, identity: dict[str, Any]) -> bytes:
    """The bytes of the file `save_train_state` writes (sent from a cluster worker to the driver)."""
    from augcam.atomic import tensor_file_bytes

    return tensor_file_bytes(*_state_tensors(state, identity))


def _state_tensors(state: TrainState, identity: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    tensors: dict[str, torch.Tensor] = {}
    tensors.update({f"model/{k}": v for k, v in state.model.items()})
    tensors.update({f"best/{k}": v for k, v in state.best_state.items()})
    tensors.update({f"rng/{k}": v for k, v in state.rng.items()})
    tensors.update({f"predictions/{k}": v for k, v in state.predictions.items()})
    optimizer_values: dict[str, dict[str, Any]] = {}
    for index, values in state.optimizer["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{index}/{key}"] = value
            else:
                optimizer_values.setdefault(str(index), {})[key] = value
    info = {
        "format": STATE_FORMAT,
        "identity": identity,
        "epochs_done": state.epochs_done,
        "best_epoch": state.best_epoch,
        "best_val_accuracy": state.best_val_accuracy,
        "history": state.history,
        "initial_digest": state.initial_digest,
        "seconds": state.seconds,
        "optimizer_param_groups": state.optimizer["param_groups"],
        "optimizer_values": optimizer_values,
    }
    return tensors, {"train_state": json.dumps(info)}


def load_train_state(path: Path, identity: dict[str, Any]) -> TrainState:
    """The state saved by `save_train_state`; ValueError if it is not one, or is another model's."""
    from augcam.atomic import read_tensor_metadata, read_tensors

    return _state_from(str(path), read_tensor_metadata(path), lambda: read_tensors(path), identity)


def train_state_from_bytes(data: bytes, identity: dict[str, Any]) -> TrainState:
    """The state in bytes made by `train_state_to_bytes` (or read from a checkpoint file)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    from augcam.atomic import DamagedFileError, check_tensor_bytes

    try:
        metadata, _ = check_tensor_bytes(data, "checkpoint")
    except DamagedFileError as err:
        raise ValueError(f"checkpoint: {err.why}") from None

    def tensors() -> dict[str, torch.Tensor]:
        try:
            return load(data)
        except SafetensorError as err:
            raise ValueError(f"checkpoint: not a valid safetensors file ({err})") from None

    return _state_from("checkpoint", metadata, tensors, identity)


def _state_from(
    where: str, metadata: dict[str, str], tensors: Callable[[], dict[str, torch.Tensor]], identity: dict[str, Any]
) -> TrainState:
    try:
        info = json.loads(metadata["train_state"])
    except (KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"{where}: not an augcam training checkpoint ({err})") from None
    if info.get("format") != STATE_FORMAT:
        raise ValueError(f"{where}: checkpoint format {info.get('format')!r}, expected {STATE_FORMAT}")
    if info.get("identity") != identity:
        raise ValueError(f"{where}: checkpoint of {info.get('identity')}, expected {identity}")
    parts: dict[str, dict[str, torch.Tensor]] = {"model": {}, "best": {}, "rng": {}, "optimizer": {}, "predictions": {}}
    for name, tensor in tensors().items():
        prefix, _, rest = name.partition("/")
        parts[prefix][rest] = tensor
    optimizer_state: dict[int, dict[str, Any]] = {}
    for name, tensor in parts["optimizer"].items():
        index, _, key = name.partition("/")
        optimizer_state.setdefault(int(index), {})[key] = tensor
    for index, values in info["optimizer_values"].items():
        optimizer_state.setdefault(int(index), {}).update(values)
    return TrainState(
        epochs_done=info["epochs_done"],
        model=parts["model"],
        optimizer={"state": optimizer_state, "param_groups": info["optimizer_param_groups"]},
        best_state=parts["best"],
        best_epoch=info["best_epoch"],
        best_val_accuracy=info["best_val_accuracy"],
        history=info["history"],
        rng=parts["rng"],
        initial_digest=info["initial_digest"],
        seconds=info["seconds"],
        predictions=parts["predictions"],
    )
