import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def fashion_mnist_available():
    # `make test` installs Debian's dataset-fashion-mnist first; without it the end-to-end tests
    # cannot run, and that is a failure, not a skip.
    if not (FASHION_MNIST / "train-images-idx3-ubyte.gz").exists() and "AUGCAM_DATA" not in os.environ:
        pytest.fail("Fashion-MNIST is not installed: run `make data` (apt-get install dataset-fashion-mnist)")
    return True


def sigkill_when(command: list[str], seen, what: str, env: dict[str, str] | None = None) -> None:
    """Run `command` and SIGKILL it as soon as `seen()` is true (polled every 5 ms, for at most
    120 s); fails if the command finished first, before `what` could be seen."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            if seen():
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, f"the command finished before {what} could be seen"


def sigkill_once_a_checkpoint_appears(
    command: list[str], out: Path, env: dict[str, str], pattern: str = "affine-*/checkpoint.safetensors"
) -> bool:
    """Run `command` (an `augcam run` into `out`) and SIGKILL it as soon as a model's epoch
    checkpoint matching `pattern` shows up under out/models. Returns whether a checkpoint is still
    there after the kill (usually; rarely the model had just finished)."""
    models = out / "models"
    sigkill_when(command, lambda: models.exists() and any(models.glob(pattern)), "a checkpoint", env)
    return bool(list(models.glob("*/checkpoint.safetensors")))
