"""Errors a user can cause and fix: the CLI prints their message and exits with status 2."""


class AugcamError(Exception):
    """Base class: the message alone must tell the user what is wrong and where."""


class ConfigError(AugcamError):
    """A study configuration (or a name in it) is invalid."""


class DataError(AugcamError):
    """A data file or directory is missing, truncated or malformed."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a study; its message says what it interrupted ("training affine seed 0
    (stage train)"). A KeyboardInterrupt still, so callers that catch that catch this too."""
