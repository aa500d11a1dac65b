"""evaluate() and evaluate_health(): which diffs violate the policy, with names and numbers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from model_diff.hooks.check import Violation, evaluate, evaluate_health, fails, name_list
from model_diff.hooks.policy import Policy, policy_from_mapping

from model_diff.checkpoint import from_arrays
from model_diff.diff import DiffConfig, ModelDiff

from .conftest import base_state, frozen_step, healthy_step, nan_step


def judge(
    old: Mapping[str, np.ndarray],
    new: Mapping[str, np.ndarray],
    policy: Policy | None = None,
    analysis: Mapping[str, Any] | None = None,
) -> list[Violation]:
    diffs, summary = ModelDiff(DiffConfig(include_unchanged=True)).diff(
        from_arrays(old), from_arrays(new)
    )
    return evaluate(diffs, summary, analysis, policy or Policy())


def codes(vs: list[Violation]) -> list[tuple[str, str]]:
    return [(v.code, v.level) for v in vs]


def test_healthy_full_fine_tune_step_passes() -> None:
    """Every tensor moved a little: no violation at all."""
    a = base_state()
    assert judge(a, healthy_step(a)) == []


def test_frozen_layer_fails_and_names_tensors() -> None:
    """Tensors that stayed bit-identical while others moved are an error naming them."""
    a = base_state()
    (v,) = judge(a, frozen_step(a, "model.layers.1.mlp."))
    assert (v.code, v.level) == ("frozen-layers", "error")
    assert v.tensors == (
        "model.layers.1.mlp.down_proj.weight",
        "model.layers.1.mlp.gate_proj.weight",
        "model.layers.1.mlp.up_proj.weight",
    )
    assert v.numbers == {"frozen": 3, "changed": 18}
    assert "model.layers.1.mlp.up_proj.weight" in v.message and "3 tensor(s)" in v.message


def test_allow_frozen_globs_silence_matching_tensors_only() -> None:
    """allow_frozen matches tensor names with fnmatch; other frozen tensors still fail."""
    a = base_state()
    new = frozen_step(a, "model.layers.1.")
    assert judge(a, new, Policy(allow_frozen=("model.layers.1.*",))) == []
    (v,) = judge(a, new, Policy(allow_frozen=("model.layers.1.mlp.*",)))
    assert v.code == "frozen-layers" and all(
        "self_attn" in t or "layernorm" in t for t in v.tensors
    )


def test_identical_checkpoint_and_integer_buffers_are_not_frozen() -> None:
    """Nothing changed -> no frozen report; integer buffers never count as frozen."""
    a = base_state()
    assert judge(a, {k: v.copy() for k, v in a.items()}) == []
    a["model.position_ids"] = np.arange(8, dtype=np.int64)
    b = healthy_step(a)
    assert judge(a, b) == []


def test_nan_gained_fails_always_with_counts() -> None:
    """NaN in the new checkpoint is an error with per-tensor counts, whatever else is ignored."""
    a = base_state()
    policy = policy_from_mapping({"severity": {"frozen-layers": "ignore"}})
    (v,) = judge(a, nan_step(a), policy)
    assert (v.code, v.level) == ("nonfinite-values", "error")
    assert v.tensors == ("model.layers.0.mlp.up_proj.weight",)
    assert v.numbers["nan"] == 3 and v.numbers["inf"] == 0
    assert "model.layers.0.mlp.up_proj.weight (3 NaN)" in v.message


def test_low_cosine_and_large_relative_change_use_policy_thresholds() -> None:
    """A re-initialised tensor fails both min_cosine and max_relative_change, with numbers."""
    a = base_state()
    b = healthy_step(a)
    rng = np.random.default_rng(7)
    name = "model.layers.0.self_attn.q_proj.weight"
    b[name] = rng.standard_normal(a[name].shape).astype(np.float32) * 0.25
    vs = judge(a, b)
    assert codes(vs) == [("low-cosine", "error"), ("large-relative-change", "error")]
    assert vs[0].tensors == (name,) and vs[0].numbers["cosine"][name] < 0.5
    assert vs[1].numbers["relative_change"][name] > 1.0
    relaxed = Policy(min_cosine=-1.0, max_relative_change=float("inf"))
    assert judge(a, b, relaxed) == []


def test_architecture_shape_dtype_changes_warn_unless_configured() -> None:
    """Added/removed, reshaped and recast tensors are warnings; severity can make them errors."""
    a = base_state()
    b = healthy_step(a)
    b["extra.weight"] = np.ones(4, dtype=np.float32)
    del b["lm_head.weight"]
    b["model.embed_tokens.weight"] = np.concatenate(
        [b["model.embed_tokens.weight"], np.zeros((4, 16), np.float32)]
    )
    b["model.norm.weight"] = b["model.norm.weight"].astype(np.float16)
    vs = judge(a, b)
    assert codes(vs) == [
        ("architecture-changed", "warning"),
        ("shape-changed", "warning"),
        ("dtype-changed", "warning"),
    ]
    assert vs[0].tensors == ("extra.weight", "lm_head.weight")
    assert "[32, 16] -> [36, 16]" in vs[1].message
    assert "float32 -> float16" in vs[2].message
    assert not fails(vs, "error") and fails(vs, "warning")
    strict = policy_from_mapping(
        {"severity": {"dtype-changed": "error", "architecture-changed": "ignore"}}
    )
    assert codes(judge(a, b, strict)) == [("dtype-changed", "error"), ("shape-changed", "warning")]


def test_analyzer_insights_map_by_severity_and_overrides() -> None:
    """Insights the policy does not compute map critical->error, warning->warning, info->ignored."""
    a = base_state()
    b = healthy_step(a)
    analysis = {
        "insights": [
            {
                "code": "norm-explosion",
                "severity": "critical",
                "category": "stability",
                "title": "Norm explosion",
                "description": "norm grew 40x",
                "evidence": {"tensors": ["lm_head.weight"], "ratio": 40.0},
            },
            {
                "code": "change-pattern",
                "severity": "info",
                "category": "pattern",
                "title": "Gradient pattern",
                "description": "later layers changed more",
                "evidence": {"tensors": []},
            },
            {
                "code": "frozen-layers",
                "severity": "warning",
                "category": "training",
                "title": "dup",
                "description": "computed by the policy itself",
                "evidence": {},
            },
        ]
    }
    (v,) = judge(a, b, analysis=analysis)
    assert (v.code, v.level, v.tensors) == ("norm-explosion", "error", ("lm_head.weight",))
    assert v.numbers == {"ratio": 40.0} and "lm_head.weight" in v.message
    lowered = policy_from_mapping(
        {"severity": {"norm-explosion": "warning", "change-pattern": "warning"}}
    )
    assert codes(judge(a, b, lowered, analysis)) == [
        ("norm-explosion", "warning"),
        ("change-pattern", "warning"),
    ]


def test_evaluate_requires_unchanged_tensors() -> None:
    """Without include_unchanged the frozen tensors cannot be named: refuse, don't guess."""
    a = base_state()
    diffs, summary = ModelDiff().diff(from_arrays(a), from_arrays(frozen_step(a, "lm_head")))
    with pytest.raises(ValueError, match="include_unchanged"):
        evaluate(diffs, summary, None, Policy())


def test_health_reports_nan_and_inf_per_tensor() -> None:
    """Single-file check: Inf and NaN counted per tensor; a clean file has no violation."""
    a = base_state()
    assert evaluate_health(from_arrays(a).tensor_info) == []
    a["lm_head.weight"][1, 1] = np.inf
    a["model.norm.weight"][0] = np.nan
    (v,) = evaluate_health(from_arrays(a).tensor_info)
    assert v.tensors == ("lm_head.weight", "model.norm.weight")  # natural name order
    assert v.numbers["per_tensor"] == {
        "lm_head.weight": {"nan": 0, "inf": 1},
        "model.norm.weight": {"nan": 1, "inf": 0},
    }


def test_name_list_truncates_after_five() -> None:
    """Long tensor lists show the first five, then 'and N more'."""
    assert name_list([f"t{i}" for i in range(8)]) == "t0, t1, t2, t3, t4 and 3 more"
    assert name_list(["a", "b"]) == "a, b"
