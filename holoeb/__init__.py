"""holoeb: energy-based learning in physical and neuromorphic systems, in JAX.

Importing holoeb sets one XLA CPU flag before the backend starts: with jaxlib 0.10
on CPU, jits holding complex nudged relaxation loops can fail to compile
("Unknown MLIR failure") under the fusion emitters; ``--xla_cpu_use_fusion_emitters=false``
avoids it. Set ``HOLOEB_KEEP_XLA_FLAGS=1`` to leave XLA_FLAGS untouched.
"""
import os as _os

_FLAG = "--xla_cpu_use_fusion_emitters=false"
if not _os.environ.get("HOLOEB_KEEP_XLA_FLAGS"):
    _flags = _os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_use_fusion_emitters" not in _flags:
        _os.environ["XLA_FLAGS"] = (_flags + " " + _FLAG).strip()

__version__ = "0.1.0"

from holoeb.data.batch import Batch  # noqa: E402
from holoeb.estimators import EstimatorResult, make_estimator, ESTIMATORS  # noqa: E402
from holoeb.models import make_model  # noqa: E402

__all__ = ["Batch", "EstimatorResult", "make_estimator", "ESTIMATORS", "make_model"]
