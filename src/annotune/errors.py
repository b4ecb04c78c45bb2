"""Errors a user can fix. The CLI prints them without a traceback and exits non-zero."""


class AnnotuneError(Exception):
    """A problem with the user's input or environment, with a message that says what to do."""

    exit_code = 2


class DataError(AnnotuneError):
    """Invalid dataset content; the message lists file:line:field for each problem."""

    exit_code = 1


class ModelLoadError(AnnotuneError):
    """A model reference that cannot be resolved or loaded."""


class RunDirError(AnnotuneError):
    """A run folder that is missing, incomplete, or would be overwritten."""


class TrainingError(AnnotuneError):
    """Training cannot go on (e.g. the loss diverged, or --compile on could not compile)."""


class ExportError(AnnotuneError):
    """A run that cannot be exported in the format asked for; the message says which formats still work."""
