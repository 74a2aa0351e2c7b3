"""Shape bookkeeping shared by layered dense models:
in_features -> hidden[0] -> ... -> hidden[-1] -> num_classes (the output layer)."""
from holoeb.errors import ConfigError


class DenseLayout:
    """Mixin for frozen dataclasses with fields ``in_features``, ``hidden``, ``num_classes``."""

    def normalize_hidden(self):
        """Store ``hidden`` as a tuple of ints and reject empty or non-positive widths."""
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if not self.hidden or min(self.hidden) < 1:
            raise ConfigError(f"hidden must be a non-empty tuple of positive widths, got {self.hidden}")

    @property
    def input_shape(self):
        return (self.in_features,)

    @property
    def sizes(self):
        """Layer widths n_1..n_L (the output layer has num_classes units)."""
        return self.hidden + (self.num_classes,)

    @property
    def num_layers(self):
        return len(self.sizes)
