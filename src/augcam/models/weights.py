"""Initial weights from a local file (`model.weights`): safetensors, or a PyTorch checkpoint read
with ``torch.load(weights_only=True)`` (no pickled code runs). Nothing is downloaded.

Every tensor of the file must match the model's by name and shape, with two adaptations that are
stated in the report: the classifier (the last `nn.Linear`, whose output is the class count) keeps
its seeded initialisation when the file's class count differs, and an RGB stem convolution is
summed over its input channels for 1-channel data (as timm's `adapt_input_conv` does). Anything
else missing, unexpected or mis-shaped is a ConfigError naming the file and the keys.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import nn

from augcam import atomic
from augcam.errors import ConfigError

_SHOWN = 6  # keys named in an error message


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"model.weights: {path} does not exist (a local .safetensors or .pt file)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ConfigError(
            f"model.weights: {path} cannot be read as safetensors or a PyTorch state dict ({err})"
        ) from None
    for key in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"model.weights: {path} holds no state dict of tensors")
    return state


def _classifier_keys(model: nn.Module) -> set[str]:
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    return {f"{linears[-1]}.weight", f"{linears[-1]}.bias"} if linears else set()


def _listed(keys) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:_SHOWN]) + (f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else "")


def load_weights(model: nn.Module, path: str | Path) -> list[str]:
    """Load the file's tensors into `model` in place; returns what was adapted, in words."""
    file_state = read_state_dict(path)
    own = model.state_dict()
    missing, unexpected = set(own) - set(file_state), set(file_state) - set(own)
    if missing or unexpected:
        parts = [
            f"missing {_listed(missing)}" if missing else "",
            f"unexpected {_listed(unexpected)}" if unexpected else "",
        ]
        raise ConfigError(f"model.weights: {path} does not fit the model: {'; '.join(p for p in parts if p)}")
    classifier, adapted, loaded = _classifier_keys(model), [], {}
    mismatched = []
    for key, tensor in file_state.items():
        target = own[key]
        if tensor.shape == target.shape:
            loaded[key] = tensor
        elif key in classifier and tensor.shape[1:] == target.shape[1:]:
            loaded[key] = target  # the seeded initialisation, for the study's classes
            if key.endswith("weight"):
                adapted.append(
                    f"classifier {key.rsplit('.', 1)[0]} replaced ({tensor.shape[0]} classes in the file, "
                    f"{target.shape[0]} in the study)"
                )
        elif (
            tensor.dim() == 4
            and target.shape[1] == 1
            and tensor.shape[1] == 3
            and tensor.shape[0] == target.shape[0]
            and tensor.shape[2:] == target.shape[2:]
        ):
            loaded[key] = tensor.sum(dim=1, keepdim=True)
            adapted.append(f"{key} summed over its 3 input channels for 1-channel data")
        else:
            mismatched.append(f"{key} {tuple(tensor.shape)} ≠ {tuple(target.shape)}")
    if mismatched:
        raise ConfigError(f"model.weights: {path} does not fit the model: shapes differ for {_listed(mismatched)}")
    model.load_state_dict(loaded)
    return adapted


def file_sha256(path: str | Path) -> str:
    """The file's SHA-256 (what a model's id records of its initial weights)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"model.weights: {path} does not exist (a local .safetensors or .pt file)")
    stat = path.stat()
    return _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.cache
def _sha256(path: str, _size: int, _mtime: int) -> str:
    # Size and modification time in the cache key: a file rewritten in place is hashed again.
    return atomic.file_sha256(Path(path))
