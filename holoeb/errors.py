"""holoeb's error classes: every user error is one of these (the CLI prints one line, exit code 2)."""


class HoloebError(Exception):
    """Base class of the errors holoeb raises for bad input or failed numerics."""


class ConfigError(HoloebError, ValueError):
    """A configuration value, key or combination is invalid."""


class ModelEstimatorMismatch(HoloebError, ValueError):
    """An estimator cannot run on a model (the message names both and what would work)."""


class DivergenceError(HoloebError, RuntimeError):
    """A relaxation or update produced non-finite values or did not converge."""
