"""Value checks shared by the config sections, the loader and the executors."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator

from augcam.atomic import json_digest

# The tables store integers (seeds, sizes) as int64, and torch takes its sizes and indices as int64.
INT64_MAX = 2**63 - 1
NAME_MAX_BYTES = 255  # NAME_MAX: the longest file-name component Linux and macOS file systems take
# Characters a name or label cannot carry as written: path separators (file names), `[` `]` (the
# console's rich markup would take them for styles, and `[/x]` stops the run with an error), `$`
# (matplotlib's figures would parse `$...$` as mathematics, and fail on unknown symbols).
NAME_RESERVED = "/\\[]$"


def int64(value: Any) -> Any:
    """`value` unchanged, or a ValueError when it is an integer (or a list holding one) that does
    not fit in int64, so that an impossible size or seed fails here instead of deep in a run."""
    for number in value if isinstance(value, list) else [value]:
        if isinstance(number, int) and not isinstance(number, bool) and not -INT64_MAX - 1 <= number <= INT64_MAX:
            raise ValueError(f"{number} does not fit in a 64-bit integer (at most {INT64_MAX})")
    return value


def check_seed(seed: int) -> int:
    """A seed every random stream takes as written: numpy and torch.Generator take unsigned 64-bit
    seeds, the tables' seed column is signed 64-bit, so [0, 2**63 - 1]."""
    if not 0 <= seed <= INT64_MAX:
        raise ValueError(f"a seed must be an integer from 0 to 2**63 - 1 = {INT64_MAX}, got {seed}")
    return seed


def check_name(name: str) -> str:
    """A study name or label the console, the figures and a file name can carry as written."""
    if not name.strip():
        raise ValueError("must not be empty or blank")
    for char in name:
        if not char.isprintable() or char in NAME_RESERVED:
            raise ValueError(
                f"must not contain {char!r} (not allowed: control characters, NUL, line breaks, "
                f"and {' '.join(NAME_RESERVED)}), got {name!r}"
            )
    size = len(name.encode())
    if size > NAME_MAX_BYTES:
        raise ValueError(f"is {size} bytes long in UTF-8; at most {NAME_MAX_BYTES} (one file-name component)")
    return name


Seed = Annotated[int, AfterValidator(check_seed)]
Name = Annotated[str, AfterValidator(check_name)]


def distinct(values: list, what: str) -> list:
    """`values` unchanged, or a ValueError naming `what` when one is listed twice."""
    if len(set(values)) != len(values):
        raise ValueError(f"{what} must be distinct, got {values}")
    return values


def distinct_labels(entries: list, what: str) -> list:
    """`entries` unchanged, or a ValueError naming the `what` (augmentation, candidate) whose label
    (`display`) is listed more than once: every entry names its own rows, files and curves."""
    labels = [entry.display for entry in entries]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(
            f"{what} {', '.join(map(repr, repeated))} is listed more than once; give each entry its own `label`"
        )
    return entries


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
    """SHA-256 of a JSON-serialisable value in canonical form (`augcam.atomic.json_digest`)."""
    return json_digest(value)
