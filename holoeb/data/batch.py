"""The batch type every estimator takes: (x, y) with integer labels y."""
from holoeb.dynamics import Batch

__all__ = ["Batch"]
