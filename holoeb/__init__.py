"""holoeb: energy-based learning in physical and neuromorphic systems, in JAX.

XLA's CPU fusion emitters vectorise the elementwise work (sigmoids, exponentials) and
are left on: complex activations and softmax are written in real arithmetic
(holoeb.activations.complex_logistic, holoeb.holomorphic.exp), which also avoids the
"Unknown MLIR failure" that complex exp fusions raised with jaxlib 0.10. Should a
complex configuration still fail to compile, ``HOLOEB_NO_FUSION_EMITTERS=1`` (set
before importing holoeb) adds ``--xla_cpu_use_fusion_emitters=false`` to XLA_FLAGS
(slower: about 1.3x per MLP training step).
"""
import os as _os

_FLAG = "--xla_cpu_use_fusion_emitters=false"
if _os.environ.get("HOLOEB_NO_FUSION_EMITTERS"):
    _flags = _os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_use_fusion_emitters" not in _flags:
        _os.environ["XLA_FLAGS"] = (_flags + " " + _FLAG).strip()

__version__ = "0.1.0"

from holoeb.data.batch import Batch  # noqa: E402
from holoeb.estimators import EstimatorResult, make_estimator, ESTIMATORS  # noqa: E402
from holoeb.models import make_model  # noqa: E402

__all__ = ["Batch", "EstimatorResult", "make_estimator", "ESTIMATORS", "make_model"]
