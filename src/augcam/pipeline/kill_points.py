"""A test-only hook that kills the process at a named point of a run.

When the environment variable AUGCAM_TEST_KILL_AT names a point, the process kills itself there
with SIGKILL, so tests can interrupt a run at a precise and reproducible place (on a loaded
machine "kill after N seconds" lands anywhere). Points, `i` being the model's position in the
plan (0 = baseline; in an architecture selection, the seed's position among its seeds):

    train:<i>:<epoch>     after model i's checkpoint of that epoch (1-based) is written
    explain:<i>:<batch>   after batch <batch> (1-based) of model i's CAMs, before its CAM set is stored
    compare:<i>           after model i's metrics are gathered, before metrics.parquet is written
    stage:<name>          after stage <name> is recorded as complete in the manifest
    candidate:<c>         after candidate c (0 = first) of an architecture selection is trained and stored

AUGCAM_TEST_INTERRUPT_AT takes the same points and sends SIGINT instead (a Ctrl-C at that point).
Never set either outside tests.
"""

from __future__ import annotations

import os
import signal

KILL_AT_ENV = "AUGCAM_TEST_KILL_AT"
INTERRUPT_AT_ENV = "AUGCAM_TEST_INTERRUPT_AT"


def kill_point(*parts: object) -> None:
    """SIGKILL this process if AUGCAM_TEST_KILL_AT names this point, SIGINT if AUGCAM_TEST_INTERRUPT_AT does."""
    point = ":".join(str(part) for part in parts)
    for env, sig in ((KILL_AT_ENV, signal.SIGKILL), (INTERRUPT_AT_ENV, signal.SIGINT)):
        if os.environ.get(env) == point:
            os.kill(os.getpid(), sig)
