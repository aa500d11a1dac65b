"""The JSON report: strict JSON, stable keys, validated by the shipped schema.json."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import jsonschema
import numpy as np
import pytest

import model_diff
from model_diff.checkpoint import from_arrays
from model_diff.diff import DiffConfig, ModelDiff
from model_diff.report import create_diff_report

from .conftest import Diffed
from .pairs import diff_pair


@functools.lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    text = resources.files("model_diff.report").joinpath("schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def _strict_loads(text: str) -> Any:
    def reject(token: str) -> None:
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(text, parse_constant=reject)


def test_report_validates_against_shipped_schema(pair: Diffed) -> None:
    doc = _strict_loads(
        create_diff_report(pair.diffs, pair.summary, pair.analysis, format="json", **pair.kwargs())
    )
    jsonschema.validate(doc, _schema(), cls=jsonschema.Draft202012Validator)
    assert doc["schema_version"] == "1.1"
    assert doc["tool"] == {"name": "model-diff", "version": model_diff.__version__}
    assert doc["config"]["diff"]["include_unchanged"] is True
    assert doc["inputs"]["new"]["dtypes"] == pair.new.dtypes  # parameters per dtype
    assert set(doc["inputs"]["new"]["dtypes"]) == {"float16", "float32"}
    assert doc["inputs"]["old"]["num_parameters"] == pair.old.num_parameters


def test_schema_rejects_a_malformed_report(pair: Diffed) -> None:
    """The schema has teeth: a negative count or a tensor in the wrong group fails."""
    doc = json.loads(create_diff_report(pair.diffs, pair.summary, None, format="json"))
    bad = json.loads(json.dumps(doc))
    bad["counts"]["added"] = -1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, _schema(), cls=jsonschema.Draft202012Validator)
    bad = json.loads(json.dumps(doc))
    bad["tensors"]["removed"].append(bad["tensors"]["added"][0])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, _schema(), cls=jsonschema.Draft202012Validator)


def test_per_tensor_records_are_to_dict_grouped_in_natural_order(pair: Diffed) -> None:
    doc = json.loads(create_diff_report(pair.diffs, pair.summary, pair.analysis, format="json"))
    by_name = {d.name: d for d in pair.diffs}
    seen = []
    for group, records in doc["tensors"].items():
        for r in records:
            assert r == json.loads(json.dumps(by_name[r["name"]].to_dict()))
            assert r["change_type"] == group
        seen += [r["name"] for r in records]
    assert sorted(seen) == sorted(by_name)
    modified = [r["name"] for r in doc["tensors"]["modified"]]
    assert modified.index("model.layers.2.mlp.up_proj.weight") > modified.index(
        "model.layers.1.mlp.up_proj.weight"
    )
    assert list(doc) == [
        "schema_version",
        "tool",
        "old_name",
        "new_name",
        "inputs",
        "config",
        "counts",
        "summary",
        "analysis",
        "tensors",
    ]


def test_nan_and_inf_become_null_never_bare_nan() -> None:
    a = {"w": np.ones(4, np.float32), "z": np.zeros(4, np.float32)}
    b = {"w": np.array([np.nan, np.inf, 1, 1], np.float32), "z": np.zeros(4, np.float32)}
    b["z"][0] = 1.0  # relative change of an all-zero tensor is undefined
    diffs, summary = ModelDiff(DiffConfig(include_unchanged=True)).diff(
        from_arrays(a), from_arrays(b)
    )
    text = create_diff_report(
        diffs,
        summary,
        {
            "insights": [
                {
                    "code": "x",
                    "severity": "critical",
                    "title": "t",
                    "description": "d",
                    "evidence": {"ratio": float("nan")},
                }
            ]
        },
        format="json",
    )
    doc = _strict_loads(text)
    w = doc["tensors"]["modified"][0]
    assert w["name"] == "w" and w["new_stats"]["nan_count"] == 1
    assert w["new_stats"]["inf_count"] == 1
    assert doc["tensors"]["modified"][1]["relative_change"] is None
    assert doc["analysis"]["insights"][0]["evidence"]["ratio"] is None
    jsonschema.validate(doc, _schema(), cls=jsonschema.Draft202012Validator)


def test_analysis_none_is_null_and_inputs_fall_back_to_summary() -> None:
    """Without inputs=, dtypes are only claimed when every tensor is in the diff list."""
    a = {"w": np.ones(4, np.float32), "v": np.ones(2, np.float32)}
    b = {"w": np.full(4, 2.0, np.float32), "v": np.ones(2, np.float32)}
    old, new = (
        from_arrays(a, path="a.npz", format="npz"),
        from_arrays(b, path="b.npz", format="npz"),
    )
    diffs, summary, _ = diff_pair(old, new)
    doc = json.loads(create_diff_report(diffs, summary, None, format="json"))
    assert doc["analysis"] is None
    assert doc["old_name"] == "a.npz"
    assert doc["inputs"]["old"] == {
        "path": "a.npz",
        "format": "npz",
        "num_tensors": 2,
        "num_parameters": 6,
        "size_bytes": None,
        "dtypes": {"float32": 6},
    }
    changed_only, summary2 = ModelDiff().diff(old, new)
    doc2 = json.loads(create_diff_report(changed_only, summary2, None, format="json"))
    assert doc2["inputs"]["old"]["dtypes"] is None
    assert doc2["counts"]["unchanged"] == 1 and doc2["tensors"]["unchanged"] == []
    jsonschema.validate(doc2, _schema(), cls=jsonschema.Draft202012Validator)


def test_inputs_accept_the_cli_short_keys(pair: Diffed) -> None:
    """inputs={"old": {"tensors", "parameters", ...}} map to num_tensors / num_parameters."""
    inputs = {
        side: {
            "path": f"{side}.safetensors",
            "format": "safetensors",
            "tensors": 7,
            "parameters": 70,
            "dtypes": {"bfloat16": 70},
        }
        for side in ("old", "new")
    }
    doc = json.loads(
        create_diff_report(pair.diffs, pair.summary, None, format="json", inputs=inputs)
    )
    assert doc["inputs"]["old"] == {
        "path": "old.safetensors",
        "format": "safetensors",
        "num_tensors": 7,
        "num_parameters": 70,
        "size_bytes": None,
        "dtypes": {"bfloat16": 70},
    }
    jsonschema.validate(doc, _schema(), cls=jsonschema.Draft202012Validator)
