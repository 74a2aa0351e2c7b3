"""holoeb's error classes: every user error is one of these (the CLI prints one line, exit code 2)."""


class HoloebError(Exception):
    """Base class of the errors holoeb raises for bad input or failed numerics."""


class ConfigError(HoloebError, ValueError):
    """A configuration value, key or combination is invalid."""


class ModelEstimatorMismatch(HoloebError, ValueError):
    """An estimator cannot run on a model (the message names both and what would work)."""


class DivergenceError(HoloebError, RuntimeError):
    """A relaxation or update produced non-finite values or did not converge."""


class UsageExit(SystemExit):
    """A command-line usage error found while parsing arguments: exit status 2, and str()
    is the message (the CLI prints it as one line ``holoeb: error: ...``)."""

    def __init__(self, message):
        super().__init__(2)
        self.message = message

    def __str__(self):
        return self.message
