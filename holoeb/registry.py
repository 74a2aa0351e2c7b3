"""Adding a class to one of holoeb's registries (models, estimators), checked, and
looking one up by name.

A registry maps a name (as configs and the CLI spell it) to a class deriving from
the registry's contract; a wrong class or a name already taken by another class is
refused with a ConfigError instead of failing later inside a training run.
"""
from holoeb.errors import ConfigError


def register(registry, name, cls, base, kind):
    """``registry[name] = cls`` after checking that ``cls`` derives from ``base`` and that
    ``name`` (a non-empty string) is free or already names ``cls``."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a {kind} name must be a non-empty string, got {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(
            f"cannot register {kind} {name!r}: {cls!r} does not derive from {base.__module__}.{base.__name__}"
        )
    taken = registry.get(name)
    if taken is not None and taken is not cls:
        raise ConfigError(f"{kind} name {name!r} is taken by {taken.__module__}.{taken.__name__}; choose another name")
    registry[name] = cls


def lookup(registry, name, kind):
    """``registry[name]``; an unknown name raises ConfigError listing the registered ones."""
    try:
        return registry[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown {kind} {name!r}; choose one of {sorted(registry)}") from None
