"""holoeb.reports: the markdown table and its JSON data, written whole."""
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from holoeb.reports import write_report


def test_report_writes_table_and_data_with_array_values(tmp_path):
    stem = str(tmp_path / "new" / "dir" / "scan")
    data = {"beta": np.float32(0.25), "steps": np.int64(3), "norms": np.array([1.5, 2.0]),
            "cos": jnp.array([[1.0, 0.5]]), "label": "p-ep", "missing": None}
    paths = write_report(stem, ["| a | b |", "|---|---|", "| 1 | 2 |"], data)
    assert paths == [stem + ".md", stem + ".json"]
    assert open(stem + ".md").read() == "| a | b |\n|---|---|\n| 1 | 2 |\n"
    back = json.load(open(stem + ".json"))
    assert back == {"beta": 0.25, "steps": 3, "norms": [1.5, 2.0], "cos": [[1.0, 0.5]], "label": "p-ep",
                    "missing": None}
    assert type(back["steps"]) is int


def test_report_text_is_kept_and_data_optional(tmp_path):
    stem = str(tmp_path / "t")
    assert write_report(stem, "header\n\n| x |") == [stem + ".md"]
    assert open(stem + ".md").read() == "header\n\n| x |\n"
    assert not os.path.exists(stem + ".json")


def test_unwritable_data_leaves_the_previous_report(tmp_path):
    stem = str(tmp_path / "r")
    write_report(stem, ["old"], {"v": 1})
    with pytest.raises(TypeError, match="cannot write a object"):
        write_report(stem, ["new"], {"v": object()})
    assert open(stem + ".md").read() == "old\n"
    assert json.load(open(stem + ".json")) == {"v": 1}
    assert sorted(os.listdir(tmp_path)) == ["r.json", "r.md"]  # no temporary file left behind


@pytest.mark.parametrize("stem", ["", "results/"])
def test_a_stem_is_required(stem):
    with pytest.raises(ValueError, match="path stem"):
        write_report(stem, ["x"])


def test_write_json_refuses_unencodable_data_before_touching_the_file(tmp_path):
    from holoeb.reports import write_json

    path = str(tmp_path / "results.json")
    write_json(path, {"runs": [np.float64(1.5)], "n": np.int32(2)})
    assert json.load(open(path)) == {"runs": [1.5], "n": 2}
    with pytest.raises(TypeError, match="cannot write a object"):
        write_json(path, {"runs": [object()]})
    assert json.load(open(path)) == {"runs": [1.5], "n": 2}
    assert os.listdir(tmp_path) == ["results.json"]
