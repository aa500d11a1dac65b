"""violations(): the insights a policy levels error or warning, with names and numbers.

The analyzer makes every finding (under the policy's AnalysisConfig); these tests pin what
the gate ends up saying for real pairs, so a rule changed in the analyzer shows up here too.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from model_diff.hooks.check import Violation, fails, name_list, violations
from model_diff.hooks.policy import Policy, policy_from_mapping

from model_diff.analysis import DiffAnalyzer
from model_diff.checkpoint import from_arrays
from model_diff.pipeline import compare

from .conftest import base_state, frozen_step, healthy_step, nan_step


def judge(
    old: Mapping[str, np.ndarray], new: Mapping[str, np.ndarray], policy: Policy | None = None
) -> list[Violation]:
    result = compare(
        from_arrays(old), from_arrays(new), analysis_config=(policy or Policy()).analysis_config()
    )
    return violations(result.analysis.insights)


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
    assert v.numbers["count"] == 3 and v.numbers["changed"] == 18
    assert (
        "model.layers.1 (3 of 9 tensors)" in v.message
        and "3 tensor(s) exactly unchanged while 18 other(s)" in v.message
    )


def test_allow_frozen_globs_silence_matching_tensors_only() -> None:
    """allow_frozen matches tensor names with fnmatch; other frozen tensors still fail."""
    a = base_state()
    new = frozen_step(a, "model.layers.1.")
    assert judge(a, new, Policy(allow_frozen=("model.layers.1.*",))) == []
    (v,) = judge(a, new, Policy(allow_frozen=("model.layers.1.mlp.*",)))
    assert v.code == "frozen-layers" and all(
        "self_attn" in t or "layernorm" in t for t in v.tensors
    )
    assert all(".mlp." in t for t in v.numbers["allowed"]) and len(v.numbers["allowed"]) == 3


def test_identical_checkpoint_and_buffers_are_not_frozen() -> None:
    """Nothing changed -> no frozen report; integer tensors, rotary inv_freq and BatchNorm
    running statistics (float buffers) never count as frozen."""
    a = base_state()
    assert judge(a, {k: v.copy() for k, v in a.items()}) == []
    a["model.position_ids"] = np.arange(8, dtype=np.int64)
    a["model.layers.0.self_attn.rotary_emb.inv_freq"] = np.linspace(1, 0.01, 4, dtype=np.float32)
    a["encoder.bn1.running_mean"] = np.zeros(4, np.float32)
    a["encoder.bn1.running_var"] = np.ones(4, np.float32)
    a["encoder.bn1.num_batches_tracked"] = np.array(10, np.int64)
    b = healthy_step(a)
    for name in ("model.layers.0.self_attn.rotary_emb.inv_freq", "encoder.bn1.running_mean"):
        b[name] = a[name].copy()  # buffers stay bit-identical between two saves
    assert judge(a, b) == []


def test_nan_gained_fails_always_with_counts() -> None:
    """NaN in the new checkpoint is an error with per-tensor counts, whatever else is ignored."""
    a = base_state()
    policy = policy_from_mapping({"severity": {"frozen-layers": "ignore"}})
    (v,) = judge(a, nan_step(a), policy)
    assert (v.code, v.level) == ("nonfinite-values", "error")
    assert v.tensors == ("model.layers.0.mlp.up_proj.weight",)
    assert v.numbers["counts"] == {"model.layers.0.mlp.up_proj.weight": {"nan": 3, "inf": 0}}
    assert "NaN/Inf appeared in model.layers.0.mlp.up_proj.weight" in v.message


def test_low_cosine_and_large_relative_change_use_policy_thresholds() -> None:
    """A re-initialised tensor fails both min_cosine and max_relative_change, with numbers."""
    a = base_state()
    b = healthy_step(a)
    rng = np.random.default_rng(7)
    name = "model.layers.0.self_attn.q_proj.weight"
    b[name] = rng.standard_normal(a[name].shape).astype(np.float32) * 0.25
    vs = judge(a, b)
    assert codes(vs)[:2] == [("low-cosine", "error"), ("large-relative-change", "error")]
    assert vs[0].tensors == (name,) and vs[0].numbers["cosine_sim"][name] < 0.5
    assert vs[0].numbers["threshold"] == 0.5
    assert vs[1].numbers["relative_change"][name] > 1.0 and vs[1].numbers["threshold"] == 1.0
    relaxed = Policy(min_cosine=-1.0, max_relative_change=float("inf"))
    assert [c for c, _ in codes(judge(a, b, relaxed))] == ["sign-flips"]


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
    assert "32x16 -> 36x16" in vs[1].message
    assert "float32 -> float16" in vs[2].message
    assert not fails(vs, "error") and fails(vs, "warning")
    strict = policy_from_mapping(
        {"severity": {"dtype-changed": "error", "architecture-changed": "ignore"}}
    )
    assert codes(judge(a, b, strict)) == [("dtype-changed", "error"), ("shape-changed", "warning")]


def test_other_codes_take_their_severity_unless_the_policy_names_them() -> None:
    """Codes without a gate default map critical->error, warning->warning, info->ignored;
    a severity override in the policy wins."""
    a = base_state()
    b = healthy_step(a)
    b["lm_head.weight"] = a["lm_head.weight"] * 3  # norm x3: norm-explosion (a warning)
    vs = judge(a, b, Policy(max_relative_change=float("inf")))
    assert codes(vs) == [("norm-explosion", "warning")]
    assert vs[0].tensors == ("lm_head.weight",) and "lm_head.weight" in vs[0].message
    lowered = policy_from_mapping(
        {
            "max_relative_change": float("inf"),
            "severity": {"norm-explosion": "error", "change-pattern": "warning"},
        }
    )
    assert codes(judge(a, b, lowered)) == [
        ("norm-explosion", "error"),
        ("change-pattern", "warning"),
    ]


def test_insights_without_a_policy_are_no_violations() -> None:
    """Levels are the policy's to give: an analysis made without one gates nothing."""
    a = base_state()
    result = compare(from_arrays(a), from_arrays(frozen_step(a, "lm_head")))
    assert "frozen-layers" in result.analysis.codes
    assert all(i.level is None for i in result.analysis.insights)
    assert violations(result.analysis.insights) == []


def test_health_reports_nan_and_inf_per_tensor() -> None:
    """Single-file check: Inf and NaN counted per tensor; a clean file has no violation."""
    a = base_state()
    judge_one = DiffAnalyzer(Policy().analysis_config())
    assert violations(judge_one.health(from_arrays(a).tensor_info)) == []
    a["lm_head.weight"][1, 1] = np.inf
    a["model.norm.weight"][0] = np.nan
    (v,) = violations(judge_one.health(from_arrays(a).tensor_info))
    assert (v.code, v.level) == ("nonfinite-values", "error")
    assert v.tensors == ("lm_head.weight", "model.norm.weight")  # natural name order
    assert v.numbers["counts"] == {
        "lm_head.weight": {"nan": 0, "inf": 1},
        "model.norm.weight": {"nan": 1, "inf": 0},
    }


def test_name_list_truncates_after_five() -> None:
    """Long tensor lists show the first five, then 'and N more'."""
    assert name_list([f"t{i}" for i in range(8)]) == "t0, t1, t2, t3, t4 and 3 more"
    assert name_list(["a", "b"]) == "a, b"
