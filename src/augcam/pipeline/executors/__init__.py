"""Where the models' chains run: `augcam run --executor NAME` looks NAME up in EXECUTORS.

    local   one model after the other in this process (executors/local.py)
    ray     one task per model on a Ray cluster (executors/ray.py, docs/cluster.md)

An executor is an `Executor` subclass registered here; both run the same chain function and
differ only in where it runs and where its checkpoints go.
"""

from __future__ import annotations

from augcam.errors import AugcamError
from augcam.pipeline.executors.base import Chains, Executor
from augcam.registry import Registry

EXECUTORS: Registry[type[Executor]] = Registry("executor")


def register_executor(cls: type[Executor]) -> type[Executor]:
    return EXECUTORS.register(cls.name)(cls)


def executor_class(name: str, address: str | None = None) -> type[Executor]:
    """The executor called `name` (`--executor`), checked to be usable here and with `--address`;
    an AugcamError otherwise, before anything else is loaded."""
    if name not in EXECUTORS:
        raise AugcamError(f"--executor: expected {' or '.join(EXECUTORS)}, got {name!r}")
    cls = EXECUTORS[name]
    if address is not None and not cls.takes_address:
        takers = " or ".join(f"--executor {other}" for other, entry in EXECUTORS.items() if entry.takes_address)
        raise AugcamError(f"--address names a Ray cluster: use it with {takers}")
    cls.check_available()
    return cls


# Registered in this order: `--executor`'s help and errors list them so.
from augcam.pipeline.executors.local import LocalExecutor  # noqa: E402
from augcam.pipeline.executors.ray import RayExecutor  # noqa: E402

register_executor(LocalExecutor)
register_executor(RayExecutor)

__all__ = ["EXECUTORS", "Chains", "Executor", "LocalExecutor", "RayExecutor", "executor_class", "register_executor"]
