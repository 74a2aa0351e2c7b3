"""An experiment's written result: a markdown table (STEM.md) next to its data (STEM.json).

Every measurement script and the ``compare`` command report this way, so a table in the docs can
always be traced to the numbers it was printed from. Both files are written whole or not at all
(a temporary file renamed into place), so a run killed while writing leaves the previous report.
"""

from __future__ import annotations

import json
import os

import numpy as np

__all__ = ["write_report", "write_text", "write_json", "to_json"]


def to_json(value):
    """``json.dump``'s ``default``: numpy / jax scalars become Python numbers, arrays nested lists."""
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "__array__"):
        return np.asarray(value).tolist()
    raise TypeError(f"cannot write a {type(value).__name__} to a report's JSON: {value!r}")


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (a temporary file renamed into place)."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _encode(data) -> str:
    """Indented JSON text of ``data`` (numpy / jax values converted by ``to_json``)."""
    return json.dumps(data, indent=1, default=to_json) + "\n"


def write_json(path: str, data) -> None:
    """Write ``data`` as indented JSON to ``path`` whole or not at all; numpy / jax values are
    converted (``to_json``). Data that cannot be encoded raises ``TypeError`` before ``path``
    is touched."""
    write_text(path, _encode(data))


def write_report(stem: str, lines, data=None) -> list[str]:
    """Write ``STEM.md`` (``lines`` joined by newlines, a string taken as is) and, when ``data``
    is given, ``STEM.json``; create STEM's directory. Returns the paths written.

    The JSON is encoded before either file is touched: data that cannot be written (an object
    that is not a number, string, list, dict or array) raises ``TypeError`` and leaves both files
    as they were."""
    if not stem or stem.endswith(("/", os.sep)):
        raise ValueError(f"a report needs a path stem such as results/run (got {stem!r})")
    text = lines if isinstance(lines, str) else "\n".join(lines)
    if not text.endswith("\n"):
        text += "\n"
    encoded = None if data is None else _encode(data)
    os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
    paths = [stem + ".md"]
    write_text(paths[0], text)
    if encoded is not None:
        paths.append(stem + ".json")
        write_text(paths[1], encoded)
    return paths
