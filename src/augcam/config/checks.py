"""Value checks shared by the config sections, the loader and the executors."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any


def distinct(values: list, what: str) -> list:
    """`values` unchanged, or a ValueError naming `what` when one is listed twice."""
    if len(set(values)) != len(values):
        raise ValueError(f"{what} must be distinct, got {values}")
    return values


def gpus_device_conflict(gpus: float | None, device: str) -> str | None:
    """Why resources.gpus_per_model cannot go with `device`, or None when they agree (checked when
    a config is validated, and again by the Ray executor after a --device override)."""
    if gpus is not None and gpus > 0 and device in ("cpu", "mps"):
        return (
            f"resources.gpus_per_model: {gpus:g} asks for GPUs, but device is {device!r}; "
            "set it to 0 (or leave it out), or use device: cuda or auto"
        )
    if gpus == 0 and device.startswith("cuda"):
        return (
            f"resources.gpus_per_model: 0 gives the models no GPU, but device is {device!r}; "
            "give each model a share of a GPU (e.g. 0.25), or leave it out"
        )
    return None


def distinct_percentages(values: list[float]) -> list[float]:
    """Percentages of a map's pixels (Overlap Rate@Y, faithfulness@q): each in (0, 100], distinct."""
    for value in values:
        if not 0 < value <= 100:
            raise ValueError(f"each percentage must be in (0, 100], got {value:g}")
    if len(set(values)) != len(values):
        raise ValueError("percentages must be distinct")
    return values


def check_device_name(device: str) -> str:
    """`device` if it is a device augcam knows how to ask for; ValueError otherwise."""
    if device in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", device):
        return device
    raise ValueError(f"expected auto, cpu, cuda, cuda:N or mps, got {device!r}")


def digest(value: Any) -> str:
    """SHA-256 of a JSON-serialisable value in canonical form."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
