"""One typed configuration schema for ``holoeb train`` (and the machinery the study's
schema, holoeb.study.StudyConfig, shares): dataclass sections loaded from defaults <- a
JSON file <- overrides, with unknown keys and wrong types rejected by their dotted path.

Sections: model / estimator (``name`` plus free keyword arguments, validated by
``make_model`` / ``make_estimator`` when built), optimizer, data, training,
homeostasis, diagnostics. ``TrainConfig.to_dict()`` is the plain JSON dict written to a
run directory's config.json; ``TrainConfig.from_dict`` reads one back (a partial dict
is merged over the defaults).

Overrides: ``load_config(path, {"training.epochs": 3, "model": {...}}, sets=["optimizer.momentum=0.5"])``;
dict values are Python values, ``sets`` are the command line's KEY=VALUE texts, parsed
with ``parse_value`` according to the field's type.
"""
import copy
import dataclasses
import json
import keyword
import math
import typing
from typing import Dict, List, Optional

from holoeb.errors import ConfigError

# ---- generic typed dataclass machinery -----------------------------------------------------------


def _attr(key):
    return key + "_" if keyword.iskeyword(key) else key


def _key(attr):
    return attr[:-1] if attr.endswith("_") and keyword.iskeyword(attr[:-1]) else attr


def field_keys(cls):
    """The JSON keys of a dataclass section ('lambda' for the attribute lambda_)."""
    return [_key(f.name) for f in dataclasses.fields(cls)]


def _type_name(tp):
    origin = typing.get_origin(tp)
    if tp is float:
        return "a number"
    if tp is int:
        return "an integer"
    if tp is bool:
        return "true or false"
    if tp is str:
        return "a string"
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + " or null"
    if origin in (list, tuple):
        return "a list of " + _type_name(typing.get_args(tp)[0]).replace("a ", "").replace("an ", "") + "s"
    if origin is dict or tp is dict:
        return "an object {name: value}"
    return getattr(tp, "__name__", str(tp))


def coerce(value, tp, path):
    """``value`` checked against the type hint ``tp`` (ints are accepted as floats; a scalar
    where a list is expected becomes a 1-element list); ConfigError naming ``path`` otherwise."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")
    if tp is typing.Any:
        return value
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return coerce(value, args[0], path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    if origin in (list, tuple):
        item = typing.get_args(tp)[0]
        if not isinstance(value, (list, tuple)):
            value = [value]
        out = [coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise bad
        args = typing.get_args(tp)
        return {k: coerce(v, args[1], f"{path}.{k}") if args else v for k, v in value.items()}
    return value


def build_dataclass(cls, data, path, what="config key"):
    """``cls(**data)`` with every key known and every value of its field's type."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected an object {{key: value}}, got {data!r}")
    hints = typing.get_type_hints(cls)
    keys = field_keys(cls)
    unknown = [k for k in data if k not in keys]
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(f"unknown {what}{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(repr(where + k) for k in unknown)}; valid keys"
                          f"{' of ' + path if path else ''}: {sorted(keys)}")
    kw = {}
    for k, v in data.items():
        kw[_attr(k)] = coerce(v, hints[_attr(k)], f"{path}.{k}" if path else k)
    return cls(**kw)


def dataclass_to_dict(obj):
    return {_key(f.name): copy.deepcopy(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def field_type(cls, dotted):
    """The type hint of a dotted key below ``cls`` (None where it is free-form or unknown)."""
    node = cls
    for k in dotted.split("."):
        if not (isinstance(node, type) and dataclasses.is_dataclass(node)):
            return None
        hints = typing.get_type_hints(node)
        if _attr(k) not in hints:
            return None
        node = hints[_attr(k)]
    return node


def parse_value(text, tp=None):
    """Command-line text -> value: for string fields (``tp`` str / Optional[str]) the text
    itself ('null' -> None when optional); otherwise JSON ('6' -> 6, '0.5' -> 0.5,
    'true' -> True, '[1,2]' -> [1, 2], 'null' -> None), and any other text stays a string.
    Lists of strings may be written unquoted: '[cl,p-ep]' or 'cl,p-ep' -> ['cl', 'p-ep']."""
    args = typing.get_args(tp) if typing.get_origin(tp) is typing.Union else ()
    if tp is str or (str in args and len(args) == 2):
        return None if (args and text == "null") else text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        if typing.get_origin(tp) in (tuple, list) and typing.get_args(tp)[:1] == (str,):
            inner = text.strip()
            inner = inner[1:-1] if inner.startswith("[") and inner.endswith("]") else inner
            return [part.strip() for part in inner.split(",") if part.strip()]
        return text


def split_assignment(item):
    """'a.b=value' -> ('a.b', 'value')."""
    if not isinstance(item, str) or "=" not in item:
        raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
    k, v = item.split("=", 1)
    return k.strip(), v


def check(cond, path, msg, value):
    if not cond:
        raise ConfigError(f"{path} must be {msg}, got {value!r}")


def is_finite(v):
    """A number that is neither None, NaN nor infinite (config checks)."""
    return v is not None and math.isfinite(v)


# ---- the training schema ------------------------------------------------------------------------


@dataclasses.dataclass
class NamedSection:
    """A model or estimator: ``name`` and the keyword arguments of make_model / make_estimator."""

    name: str
    kwargs: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, path):
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected an object {{\"name\": ..., ...}}, got {data!r}")
        if "name" not in data:
            raise ConfigError(f"{path}: missing 'name'")
        rest = {k: copy.deepcopy(v) for k, v in data.items() if k != "name"}
        return cls(coerce(data["name"], str, f"{path}.name"), rest)

    def to_dict(self):
        return {"name": self.name, **copy.deepcopy(self.kwargs)}


@dataclasses.dataclass
class OptimizerConfig:
    # Table 3 (generalized hEP paper): SGD, lr 1e-2, momentum 0.9, batch 50, 50 epochs
    name: str = "sgd"  # sgd | adam
    learning_rate: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | cosine (per step) | cosine_epochs (per epoch, to eta_min)
    final_lr_fraction: float = 0.0  # cosine: final lr = fraction * lr
    eta_min: float = 0.0  # cosine_epochs: absolute final learning rate
    T_max: Optional[int] = None  # cosine_epochs: period in epochs (default: training.epochs)
    layer_lrs: Optional[List[float]] = None  # one base learning rate per layer of params["net"]
    lr_scales: Dict[str, float] = dataclasses.field(default_factory=dict)  # parameter name -> factor

    def validate(self, p="optimizer"):
        from holoeb.optim import OPTIMIZERS, SCHEDULES

        check(self.name in OPTIMIZERS, f"{p}.name", f"one of {list(OPTIMIZERS)}", self.name)
        check(self.schedule in SCHEDULES, f"{p}.schedule", f"one of {list(SCHEDULES)}", self.schedule)
        check(is_finite(self.learning_rate) and self.learning_rate > 0, f"{p}.learning_rate", "finite and > 0", self.learning_rate)
        check(is_finite(self.momentum) and 0 <= self.momentum < 1, f"{p}.momentum", "in [0, 1)", self.momentum)
        check(is_finite(self.weight_decay) and self.weight_decay >= 0, f"{p}.weight_decay", "finite and >= 0", self.weight_decay)
        check(is_finite(self.eta_min) and self.eta_min >= 0, f"{p}.eta_min", "finite and >= 0", self.eta_min)
        check(is_finite(self.final_lr_fraction) and self.final_lr_fraction >= 0, f"{p}.final_lr_fraction", ">= 0",
              self.final_lr_fraction)
        check(self.T_max is None or self.T_max >= 1, f"{p}.T_max", "an integer >= 1 or null", self.T_max)
        for i, v in enumerate(self.layer_lrs or []):
            check(is_finite(v) and v > 0, f"{p}.layer_lrs[{i}]", "finite and > 0", v)
        for k, v in self.lr_scales.items():
            check(is_finite(v) and v > 0, f"{p}.lr_scales.{k}", "finite and > 0", v)


@dataclasses.dataclass
class DataConfig:
    dataset: str = "fashion_mnist"
    data_dir: Optional[str] = None
    train_size: Optional[int] = None  # first n training examples (null: all)
    val_size: Optional[int] = None  # first n test examples (null: all)
    random_flip: Optional[bool] = None  # horizontal flips of training images (null: the dataset's default)
    random_crop: int = 0  # random translations of training images by up to this many pixels (edge padding)
    normalize: bool = True  # per-channel mean / std of holoeb.data.registry
    stream: Optional[bool] = None  # read the training split as a stream (null: the dataset's default)
    shuffle_buffer: int = 10000  # examples in the shuffle buffer of a streamed split

    def validate(self, p="data"):
        for k in ("train_size", "val_size"):
            v = getattr(self, k)
            check(v is None or v >= 1, f"{p}.{k}", "a positive integer or null (all examples)", v)
        check(self.shuffle_buffer >= 1, f"{p}.shuffle_buffer", "a positive integer", self.shuffle_buffer)
        check(self.random_crop >= 0, f"{p}.random_crop", "an integer >= 0 (pixels; 0: off)", self.random_crop)


WARM_STARTS = ("none", "last", "free", "example")


@dataclasses.dataclass
class TrainingConfig:
    batch_size: int = 50
    epochs: int = 50
    seed: int = 0
    eval_batch_size: int = 1000
    eval_train: bool = False  # after the last epoch, also evaluate on the training set (train_error)
    max_residual: Optional[float] = None  # a step whose free-phase residual exceeds it stops the run (or is skipped)
    on_unconverged: str = "stop"  # with max_residual: "stop" the run, or "skip" the update (counted per epoch)
    devices: Optional[int] = None  # data parallelism over this many local devices (default: all)
    distributed: bool = False  # jax.distributed.initialize() first (multi-host)
    free_dtype: Optional[str] = None  # bfloat16 | float16: half-precision free phase
    free_refine_steps: int = 20
    checkpoint: bool = True
    resume: bool = True
    checkpoint_every: Optional[int] = None  # also save every n steps inside an epoch
    checkpoints_to_keep: int = 2
    # start from the parameters of another run (a run directory: its params file or latest checkpoint;
    # or a .npz / .pkl params file) instead of the model's initialisation; the optimizer starts afresh
    init_from: Optional[str] = None
    # where each training batch's free phase starts: "none" = the zero state; "last" = where
    # the previous batch's step left the network (the comparative study's released code);
    # "free" = the previous batch's free state. Reset to zero at each epoch's start.
    # "example" = each training example's own free state from the last time it was seen
    # (persistent across epochs; zero the first time; an indexable, non-streamed training split).
    warm_start: str = "none"
    # the step's metrics stay on the device and are fetched (and checked: finiteness,
    # max_residual) once every log_every steps, so the host does not wait on each step
    log_every: int = 20

    def validate(self, p="training"):
        for k in ("batch_size", "epochs", "eval_batch_size", "checkpoints_to_keep", "log_every"):
            check(getattr(self, k) >= 1, f"{p}.{k}", "a positive integer", getattr(self, k))
        check(self.free_refine_steps >= 0, f"{p}.free_refine_steps", "an integer >= 0", self.free_refine_steps)
        check(self.devices is None or self.devices >= 1, f"{p}.devices", "a positive integer or null", self.devices)
        check(self.checkpoint_every is None or self.checkpoint_every >= 0, f"{p}.checkpoint_every",
              "an integer >= 0 or null", self.checkpoint_every)
        check(self.max_residual is None or (is_finite(self.max_residual) and self.max_residual > 0), f"{p}.max_residual",
              "finite and > 0, or null", self.max_residual)
        check(self.on_unconverged in ("stop", "skip"), f"{p}.on_unconverged", "'stop' or 'skip'", self.on_unconverged)
        check(self.warm_start in WARM_STARTS, f"{p}.warm_start", " or ".join(map(repr, WARM_STARTS)), self.warm_start)
        check(self.free_dtype in (None, "bfloat16", "float16", "float32"), f"{p}.free_dtype",
              "null, 'bfloat16', 'float16' or 'float32'", self.free_dtype)
        check(self.init_from is None or (isinstance(self.init_from, str) and self.init_from != ""), f"{p}.init_from",
              "null or the path of a run directory / params file", self.init_from)


@dataclasses.dataclass
class HomeostasisConfig:
    # lambda scales L_homeo divided by the number of state units ("per_unit", as in the
    # authors' code, the scale of the paper's lambda values); "sum" is Eq. 12 as printed
    lambda_: float = 0.0
    num_samples: int = 5
    coordinates: Optional[str] = None  # activity | pre_activation (null: the model's default)
    normalize: str = "per_unit"

    def validate(self, p="homeostasis"):
        check(is_finite(self.lambda_) and self.lambda_ >= 0, f"{p}.lambda", "finite and >= 0", self.lambda_)
        check(self.num_samples >= 1, f"{p}.num_samples", "an integer >= 1", self.num_samples)
        check(self.normalize in ("per_unit", "sum"), f"{p}.normalize", "'per_unit' or 'sum'", self.normalize)
        check(self.coordinates in (None, "activity", "pre_activation"), f"{p}.coordinates",
              "null, 'activity' or 'pre_activation'", self.coordinates)


@dataclasses.dataclass
class DiagnosticsConfig:
    enabled: bool = True  # per-epoch cosine vs RBP, weight angles, Jacobian symmetry
    batch_size: int = 100
    num_samples: int = 20
    tbp_steps: int = 20  # truncation depth of the TBP gradient the update is compared with

    def validate(self, p="diagnostics"):
        check(self.batch_size >= 1, f"{p}.batch_size", "a positive integer", self.batch_size)
        check(self.tbp_steps >= 1, f"{p}.tbp_steps", "a positive integer", self.tbp_steps)
        check(self.num_samples >= 1, f"{p}.num_samples", "an integer >= 1", self.num_samples)


SECTIONS = {
    "optimizer": OptimizerConfig,
    "data": DataConfig,
    "training": TrainingConfig,
    "homeostasis": HomeostasisConfig,
    "diagnostics": DiagnosticsConfig,
}
NAMED = ("model", "estimator")
DEFAULT_MODEL = {"name": "mlp", "hidden": [256, 256], "asymmetry": 0.0}
DEFAULT_ESTIMATOR = {"name": "cauchy", "N": 2, "beta": 0.5, "T_free": 150, "T_nudge": 20}


@dataclasses.dataclass
class TrainConfig:
    """The whole ``holoeb train`` configuration."""

    model: NamedSection = dataclasses.field(default_factory=lambda: NamedSection.from_dict(DEFAULT_MODEL, "model"))
    estimator: NamedSection = dataclasses.field(
        default_factory=lambda: NamedSection.from_dict(DEFAULT_ESTIMATOR, "estimator"))
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    homeostasis: HomeostasisConfig = dataclasses.field(default_factory=HomeostasisConfig)
    diagnostics: DiagnosticsConfig = dataclasses.field(default_factory=DiagnosticsConfig)
    description: Optional[str] = None

    def to_dict(self):
        out = {"model": self.model.to_dict(), "estimator": self.estimator.to_dict()}
        for name in SECTIONS:
            out[name] = dataclass_to_dict(getattr(self, name))
        if self.description is not None:
            out["description"] = self.description
        return out

    @classmethod
    def from_dict(cls, data):
        """A validated TrainConfig from a (possibly partial) dict, merged over the defaults."""
        merged = merge(cls().to_dict(), data)
        _check_sections(merged, "config")
        kw = {name: NamedSection.from_dict(merged[name], name) for name in NAMED}
        for name, sec in SECTIONS.items():
            kw[name] = build_dataclass(sec, merged[name], name)
        desc = merged.get("description")
        cfg = cls(description=coerce(desc, Optional[str], "description"), **kw)
        cfg.validate()
        return cfg

    def validate(self):
        for name in SECTIONS:
            getattr(self, name).validate()


DEFAULTS = TrainConfig().to_dict()  # the default config as a plain dict (read-only view)


def _check_sections(d, where):
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(d).__name__}")
    known = list(NAMED) + list(SECTIONS) + ["description"]
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {unknown}; known: {sorted(known)}")


def merge(base, override):
    """``override`` over ``base``: sections merge key by key, except model / estimator,
    which a given section replaces whole (their keyword arguments depend on the name)."""
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in NAMED:
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def set_path(cfg, dotted, value):
    """Set ``cfg[a][b] = value`` for dotted = 'a.b' (a plain dict config)."""
    keys = dotted.split(".")
    if keys[0] not in list(NAMED) + list(SECTIONS) + ["description"]:
        raise ConfigError(f"unknown config key {dotted!r}: no section {keys[0]!r}; "
                          f"sections: {sorted(list(NAMED) + list(SECTIONS))}")
    node = cfg
    for i, k in enumerate(keys[:-1]):
        nxt = node.setdefault(k, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"cannot set {dotted!r}: {'.'.join(keys[:i + 1])} is not a section")
        node = nxt
    node[keys[-1]] = value


def read_json_object(path, what="config"):
    """The JSON object in file ``path``; ConfigError if it is missing, not JSON or not an object."""
    try:
        with open(path) as f:
            user = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{what} file {path!r} not found") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{what} {path}: not valid JSON ({e})") from e
    if not isinstance(user, dict):
        raise ConfigError(f"{what} {path}: expected a JSON object, got {type(user).__name__}")
    return user


def load_config(path=None, overrides=None, sets=()):
    """TrainConfig from defaults <- JSON file ``path`` <- ``overrides`` (dotted path -> value)
    <- ``sets`` ('a.b=text' strings, parsed by the field's type). ConfigError names the
    offending dotted key for unknown keys or wrong types."""
    cfg = TrainConfig().to_dict()
    if path:
        user = read_json_object(path, "config")
        _check_sections(user, f"config {path}")
        for name in user:
            if name in SECTIONS and not isinstance(user[name], dict):
                raise ConfigError(f"config {path}: section {name!r} must be an object, got {user[name]!r}")
        cfg = merge(cfg, user)
    for key, value in (overrides or {}).items():
        set_path(cfg, key, copy.deepcopy(value))
    for item in sets or ():
        key, text = split_assignment(item)
        set_path(cfg, key, parse_value(text, field_type(TrainConfig, key)))
    return TrainConfig.from_dict(cfg)


def as_train_config(cfg):
    """A TrainConfig from a TrainConfig or a (possibly partial) plain dict."""
    if isinstance(cfg, TrainConfig):
        cfg.validate()
        return cfg
    if isinstance(cfg, dict):
        return TrainConfig.from_dict(cfg)
    raise ConfigError(f"expected a TrainConfig or a dict, got {type(cfg).__name__}")


def to_json(cfg):
    """The resolved config (a TrainConfig or its dict form) as indented JSON text (``--print-config``)."""
    return json.dumps(as_train_config(cfg).to_dict(), indent=2)
