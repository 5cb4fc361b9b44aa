import os
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
