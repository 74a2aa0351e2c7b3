"""Weight initialisation shared by the models and the readout."""
import math

import jax


def gain_uniform(rng, shape, fan_in, gain=1.0, dtype="float32"):
    """w ~ U(-c, c), c = gain / sqrt(fan_in) (comparative study, Eq. 102; gain 1 is the
    usual 1/sqrt(fan_in) bound of the MLPs and the readout)."""
    c = gain / math.sqrt(fan_in)
    return jax.random.uniform(rng, shape, dtype, -c, c)
