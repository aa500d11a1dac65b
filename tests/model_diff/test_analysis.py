"""DiffAnalyzer on synthetic checkpoint pairs whose ground truth is known by construction."""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable, Mapping

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_diff.analysis import AnalysisConfig, DiffAnalyzer
from model_diff.checkpoint import from_arrays
from model_diff.diff import DiffConfig, ModelDiff
from model_diff.toy import fine_tune, toy_transformer

Arrays = Mapping[str, np.ndarray]


def analyse(
    old: Arrays, new: Arrays, config: AnalysisConfig | None = None, include_unchanged: bool = True
) -> dict:
    diffs, summary = ModelDiff(DiffConfig(include_unchanged=include_unchanged)).diff(
        from_arrays(old), from_arrays(new)
    )
    return DiffAnalyzer(config).analyze(diffs, summary)


def codes(analysis: dict) -> list[str]:
    return [i["code"] for i in analysis["insights"]]


def insight(analysis: dict, code: str) -> dict:
    (found,) = [i for i in analysis["insights"] if i["code"] == code]
    return found


def frozen_truth(old: Arrays, new: Arrays) -> list[str]:
    from model_diff.naming import natural_sorted

    return natural_sorted(n for n in old if n in new and old[n].tobytes() == new[n].tobytes())


def only(pred: Callable[[str], bool]) -> Callable[[str], bool]:
    """A ``frozen`` predicate for fine_tune: everything is frozen except names matching pred."""
    return lambda name: not pred(name)


BASE = toy_transformer(n_blocks=8, d_model=16, vocab=64, seed=0)
SPARSE = {
    "model.layers.0.mlp.up_proj.weight",
    "model.layers.4.self_attn.k_proj.weight",
    "model.layers.7.post_attention_layernorm.weight",
}

PATTERN_CASES: dict[str, dict] = {
    "uniform": dict(frozen=(), depth_weight=lambda b, n: 1.0),
    "gradient": dict(frozen=(), depth_weight=lambda b, n: 1.0 + 3.0 * (1 - b / (n - 1))),
    "inverse_gradient": dict(),  # fine_tune's default: later blocks move more
    "focused": dict(frozen=only(lambda n: n.startswith("model.layers.3."))),
    "sparse": dict(frozen=only(SPARSE.__contains__)),
    "attention_heavy": dict(frozen=only(lambda n: ".self_attn." in n)),
    "mlp_heavy": dict(frozen=only(lambda n: ".mlp." in n)),
    "embedding_heavy": dict(frozen=only(lambda n: n == "model.embed_tokens.weight")),
}


@pytest.mark.parametrize("pattern", sorted(PATTERN_CASES))
def test_each_pattern_is_detected_and_frozen_layers_lists_exactly_the_frozen(pattern: str) -> None:
    """A pair built to show a pattern is classified as it, with the default config, and the
    frozen-layers insight names exactly the bit-identical tensors."""
    tuned = fine_tune(BASE, seed=5, **PATTERN_CASES[pattern])
    a = analyse(BASE, tuned)
    assert a["change_pattern"] == pattern, a["pattern_evidence"]
    assert insight(a, "change-pattern")["evidence"]["pattern"] == pattern
    truth = frozen_truth(BASE, tuned)
    assert a["frozen_layers"] == truth
    if truth:
        assert insight(a, "frozen-layers")["evidence"]["tensors"] == truth
    else:
        assert "frozen-layers" not in codes(a)


def test_twelve_blocks_with_only_8_to_11_trained_is_inverse_gradient_with_0_to_7_frozen() -> None:
    """Blocks 8-11 trained, 0-7 frozen: inverse_gradient, frozen-layers names blocks 0-7."""
    base = toy_transformer(n_blocks=12, d_model=16, vocab=64, seed=1)
    trained = {f"model.layers.{i}." for i in range(8, 12)}
    tuned = fine_tune(
        base,
        frozen=only(
            lambda n: (
                n[: n.index(".", 13) + 1] in trained if n.startswith("model.layers.") else False
            )
        ),
        depth_weight=lambda b, n: 1.0,
    )
    a = analyse(base, tuned)
    assert a["change_pattern"] == "inverse_gradient"
    frozen = insight(a, "frozen-layers")
    assert frozen["severity"] == "info"
    assert frozen["evidence"]["whole_blocks"] == [f"model.layers.{i}" for i in range(8)]
    assert "model.layers.0-7 (8 whole blocks)" in frozen["description"]
    assert frozen["evidence"]["tensors"] == frozen_truth(base, tuned)
    profile = {(p["block"], p["layer_type"]): p for p in a["depth_profile"]}
    assert profile[(0, "attention")]["aggregate_change"] == 0.0
    assert profile[(11, "attention")]["aggregate_change"] > 0.0


def test_nan_in_one_block_is_a_critical_insight_naming_that_tensor() -> None:
    """A NaN that appears in one tensor gives a critical nonfinite-values insight naming it."""
    tuned = fine_tune(BASE)
    tuned["model.layers.2.mlp.down_proj.weight"][0, 3] = np.nan
    tuned["model.layers.2.mlp.down_proj.weight"][1, 1] = np.inf
    a = analyse(BASE, tuned)
    nf = a["insights"][0]
    assert (nf["code"], nf["severity"]) == ("nonfinite-values", "critical")
    assert nf["evidence"]["tensors"] == ["model.layers.2.mlp.down_proj.weight"]
    assert nf["evidence"]["appeared"] == ["model.layers.2.mlp.down_proj.weight"]
    assert nf["evidence"]["counts"]["model.layers.2.mlp.down_proj.weight"] == {"nan": 1, "inf": 1}
    assert "model.layers.2.mlp.down_proj.weight" in nf["description"]
    json.dumps(a, allow_nan=False)  # still valid JSON


def test_preexisting_nan_is_told_apart_from_a_new_one() -> None:
    """NaN already in the old checkpoint is listed as pre-existing, not as appeared."""
    base = {k: v.copy() for k, v in BASE.items()}
    base["model.layers.1.mlp.up_proj.weight"][0, 0] = np.nan
    tuned = fine_tune(base, frozen=("model.layers.1.mlp.up_proj.weight",))
    tuned["model.layers.5.self_attn.v_proj.weight"][2, 2] = np.nan
    ev = insight(analyse(base, tuned), "nonfinite-values")["evidence"]
    assert ev["appeared"] == ["model.layers.5.self_attn.v_proj.weight"]
    assert ev["preexisting"] == ["model.layers.1.mlp.up_proj.weight"]


def test_vocab_resize_and_added_tensor_give_architecture_and_shape_insights() -> None:
    """Embedding/head grown by 4 rows and one tensor added/removed: insights, no crash."""
    tuned = fine_tune(BASE)
    rng = np.random.default_rng(0)
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        tuned[name] = np.concatenate([tuned[name], rng.standard_normal((4, 16)).astype(np.float32)])
    tuned["model.layers.0.self_attn.rotary.inv_freq"] = np.ones(8, dtype=np.float32)
    del tuned["model.layers.7.mlp.gate_proj.weight"]
    a = analyse(BASE, tuned)
    shape = insight(a, "shape-changed")
    assert shape["evidence"]["tensors"] == ["lm_head.weight", "model.embed_tokens.weight"]
    emb = shape["evidence"]["shapes"]["model.embed_tokens.weight"]
    assert (emb["old_shape"], emb["new_shape"]) == ([64, 16], [68, 16])
    assert (emb["overlap_rows"], emb["added_rows"]) == (64, 4)
    # the kept rows of the embedding were frozen by fine_tune: compared, found unchanged
    assert emb["overlap_relative_change"] == 0.0
    assert "vocabulary resize, +4 rows" in shape["description"]
    arch = insight(a, "architecture-changed")
    assert arch["evidence"]["added"] == ["model.layers.0.self_attn.rotary.inv_freq"]
    assert arch["evidence"]["removed"] == ["model.layers.7.mlp.gate_proj.weight"]
    assert a["change_pattern"] in {"inverse_gradient", "uniform"}
    json.dumps(a, allow_nan=False)


def test_dtype_norm_cosine_and_sign_insights() -> None:
    """A cast, a scaled-up, a scaled-down and a re-initialised tensor each get their code."""
    tuned = fine_tune(BASE)
    tuned["model.layers.1.mlp.up_proj.weight"] = BASE["model.layers.1.mlp.up_proj.weight"] * 3
    tuned["model.layers.2.mlp.up_proj.weight"] = BASE["model.layers.2.mlp.up_proj.weight"] / 4
    tuned["model.layers.3.self_attn.q_proj.weight"] = (
        np.random.default_rng(7).standard_normal((16, 16)).astype(np.float32) * 0.25
    )
    tuned["model.layers.4.self_attn.k_proj.weight"] = tuned[
        "model.layers.4.self_attn.k_proj.weight"
    ].astype(np.float16)
    a = analyse(BASE, tuned)
    assert insight(a, "dtype-changed")["evidence"]["conversions"] == {"float32 -> float16": 1}
    assert insight(a, "norm-explosion")["evidence"]["tensors"] == [
        "model.layers.1.mlp.up_proj.weight"
    ]
    assert insight(a, "norm-explosion")["evidence"]["norm_ratio"][
        "model.layers.1.mlp.up_proj.weight"
    ] == pytest.approx(3.0, rel=1e-6)
    assert insight(a, "norm-collapse")["evidence"]["tensors"] == [
        "model.layers.2.mlp.up_proj.weight"
    ]
    assert insight(a, "low-cosine")["evidence"]["tensors"] == [
        "model.layers.3.self_attn.q_proj.weight"
    ]
    assert insight(a, "sign-flips")["evidence"]["tensors"] == [
        "model.layers.3.self_attn.q_proj.weight"
    ]
    large = insight(a, "large-relative-change")["evidence"]["tensors"]
    assert large == [
        "model.layers.1.mlp.up_proj.weight",
        "model.layers.2.mlp.up_proj.weight",
        "model.layers.3.self_attn.q_proj.weight",
    ]


def test_identical_checkpoints_say_no_change_once() -> None:
    """Two identical checkpoints: pattern no_change and one no-change insight, no spam."""
    a = analyse(BASE, BASE)
    assert a["change_pattern"] == "no_change"
    assert codes(a) == ["no-change"]
    assert len(a["frozen_layers"]) == len(BASE)


def test_frozen_tensors_are_named_even_when_the_diff_list_omits_them() -> None:
    """include_unchanged=False (the original API's default) still names the frozen tensors:
    the summary lists the unchanged names (DiffSummary.unchanged_tensors, a public field)."""
    tuned = fine_tune(BASE, frozen=only(lambda n: n.startswith("model.layers.6.")))
    diffs, summary = ModelDiff(DiffConfig(include_unchanged=False)).diff(
        from_arrays(BASE), from_arrays(tuned)
    )
    assert all(d.is_changed for d in diffs)
    assert len(summary.unchanged_tensors) == len(BASE) - 9
    a = DiffAnalyzer().analyze(diffs, summary)
    fr = insight(a, "frozen-layers")
    assert fr["evidence"]["count"] == len(BASE) - 9
    assert fr["evidence"]["names_listed"] is True
    assert sorted(fr["evidence"]["tensors"]) == sorted(
        n for n in BASE if not n.startswith("model.layers.6.")
    )
    assert a["frozen_layers"] == fr["evidence"]["tensors"]
    # The records are not there: the pattern says it was computed without them.
    assert a["stats"]["unchanged_listed"] is False
    assert "include_unchanged=True" in insight(a, "change-pattern")["description"]


def test_without_unchanged_names_frozen_count_comes_from_the_summary() -> None:
    """A summary without the unchanged names still gives the frozen count, and says so."""
    tuned = fine_tune(BASE, frozen=only(lambda n: n.startswith("model.layers.6.")))
    diffs, summary = ModelDiff(DiffConfig(include_unchanged=False)).diff(
        from_arrays(BASE), from_arrays(tuned)
    )
    a = DiffAnalyzer().analyze(diffs, dataclasses.replace(summary, unchanged_tensors=[]))
    fr = insight(a, "frozen-layers")
    assert fr["evidence"]["count"] == len(BASE) - 9
    assert fr["evidence"]["names_listed"] is False
    assert "include_unchanged=True" in fr["description"]


def test_undefined_metrics_are_skipped_and_counted_not_averaged() -> None:
    """A tensor that was all zeros has no relative change: skipped, counted, avg stays finite."""
    base = dict(BASE)
    base["model.layers.0.mlp.bias"] = np.zeros(16, dtype=np.float32)
    tuned = fine_tune(base, frozen=())
    tuned["model.layers.0.mlp.bias"] = np.full(16, 0.5, dtype=np.float32)
    a = analyse(base, tuned)
    assert a["stats"]["undefined_metrics"]["relative_change"] == 1
    mlp = a["layer_analysis"]["mlp"]
    assert mlp["measured"] == mlp["count"] - 1
    assert all(isinstance(v["avg_change"], float) for v in a["layer_analysis"].values())


def test_avg_change_is_a_float_even_for_a_type_with_only_added_tensors() -> None:
    """The seed README formats avg_change with :.4f: it is never None."""
    tuned = dict(BASE)
    tuned["classifier.weight"] = np.ones((3, 16), dtype=np.float32)
    a = analyse(BASE, tuned)
    head = a["layer_analysis"]["head"]
    assert f"{head['avg_change']:.4f}" == "0.0000" and head["count"] == 2


def test_every_config_field_changes_the_result() -> None:
    """significant_change_threshold, layer_patterns, analyze_training_dynamics,
    low_cosine_threshold and norm_ratio_threshold each alter the analysis."""
    tuned = fine_tune(BASE)
    default = analyse(BASE, tuned)
    assert "large-relative-change" not in codes(default)
    assert "large-relative-change" in codes(
        analyse(BASE, tuned, AnalysisConfig(significant_change_threshold=1e-3))
    )
    patterned = analyse(BASE, tuned, AnalysisConfig(layer_patterns={"attention": r"\.mlp\."}))
    assert "mlp" not in patterned["layer_analysis"]
    assert patterned["layer_analysis"]["attention"]["count"] == 8 * 7
    off = analyse(BASE, tuned, AnalysisConfig(analyze_training_dynamics=False))
    assert off["change_pattern"] == "not_analyzed" and off["depth_profile"] == []
    assert "change-pattern" not in codes(off) and default["depth_profile"]
    assert "low-cosine" not in codes(default)
    assert "low-cosine" in codes(analyse(BASE, tuned, AnalysisConfig(low_cosine_threshold=1.0)))
    assert "norm-explosion" not in codes(default)
    assert "norm-explosion" in codes(
        analyse(BASE, tuned, AnalysisConfig(norm_ratio_threshold=1.0 + 1e-9))
    )


@pytest.mark.parametrize(
    "bad",
    [
        dict(significant_change_threshold=0),
        dict(low_cosine_threshold=2.0),
        dict(norm_ratio_threshold=1.0),
        dict(layer_patterns={"mlp": "[unclosed"}),
    ],
)
def test_invalid_config_values_are_rejected(bad: dict) -> None:
    """Out-of-range thresholds and broken regexes raise ValueError at construction."""
    with pytest.raises(ValueError):
        AnalysisConfig(**bad)


def test_output_is_deterministic_and_independent_of_input_order() -> None:
    """Same pair -> byte-identical JSON, whatever order the diffs arrive in."""
    tuned = fine_tune(BASE)
    tuned["model.layers.2.mlp.down_proj.weight"][0, 0] = np.nan
    diffs, summary = ModelDiff(DiffConfig(include_unchanged=True)).diff(
        from_arrays(BASE), from_arrays(tuned)
    )
    first = json.dumps(DiffAnalyzer().analyze(diffs, summary), allow_nan=False)
    shuffled = list(diffs)
    random.Random(4).shuffle(shuffled)
    assert json.dumps(DiffAnalyzer().analyze(shuffled, summary), allow_nan=False) == first


def test_insights_are_ordered_by_severity_then_code() -> None:
    """critical before warning before info; within a severity, by code."""
    tuned = fine_tune(BASE)
    tuned["model.layers.2.mlp.down_proj.weight"][0, 0] = np.nan
    tuned["model.layers.1.mlp.up_proj.weight"] = BASE["model.layers.1.mlp.up_proj.weight"] * 3
    got = [(i["severity"], i["code"]) for i in analyse(BASE, tuned)["insights"]]
    rank = {"critical": 0, "warning": 1, "info": 2}
    assert got == sorted(got, key=lambda x: (rank[x[0]], x[1]))
    assert got[0] == ("critical", "nonfinite-values")


def test_tied_embedding_and_head_are_detected_and_confirmed_with_checkpoints() -> None:
    """lm_head identical to the embedding on both sides -> tied-weights, confirmed by bytes."""
    base = dict(BASE)
    base["lm_head.weight"] = base["model.embed_tokens.weight"]
    tuned = fine_tune(base, frozen=())
    tuned["lm_head.weight"] = tuned["model.embed_tokens.weight"]
    old, new = from_arrays(base), from_arrays(tuned)
    diffs, summary = ModelDiff(DiffConfig(include_unchanged=True)).diff(old, new)
    a = DiffAnalyzer().analyze(diffs, summary)
    assert a["tied_weights"] == [
        {"embedding": "model.embed_tokens.weight", "head": "lm_head.weight", "confirmed": False}
    ]
    confirmed = DiffAnalyzer().analyze(diffs, summary, old=old, new=new)
    assert confirmed["tied_weights"][0]["confirmed"] is True
    assert "tied-weights" in codes(confirmed)
    untied = analyse(BASE, fine_tune(BASE, frozen=()))
    assert untied["tied_weights"] == [] and "tied-weights" not in codes(untied)


def test_layer_analysis_counts_every_tensor_once() -> None:
    """Exclusive types: the per-type counts add up to the number of tensors."""
    a = analyse(BASE, fine_tune(BASE))
    assert sum(v["count"] for v in a["layer_analysis"].values()) == len(BASE)
    assert list(a["layer_analysis"]) == ["embedding", "attention", "mlp", "norm", "head"]


def test_seed_readme_analysis_example_prints_pattern_types_and_insights(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The seed README's analysis loop runs on our dict and prints every line it promises."""
    analysis = analyse(
        BASE,
        fine_tune(BASE),
        AnalysisConfig(significant_change_threshold=0.1, analyze_training_dynamics=True),
    )
    print(f"Pattern: {analysis['change_pattern']}")
    for layer_type, data in analysis["layer_analysis"].items():
        print(f"{layer_type}: {data['count']} layers, avg change: {data['avg_change']:.4f}")
    for ins in analysis["insights"]:
        print(f"[{ins['severity']}] {ins['title']}: {ins['description']}")
    out = capsys.readouterr().out
    assert "Pattern: inverse_gradient" in out
    assert "embedding: 1 layers, avg change: 0.0000" in out
    assert (
        "[info] 1 of 75 tensors frozen (bit-identical): 1 tensor(s) exactly unchanged "
        "while 74 other(s) changed: model.embed_tokens.weight." in out
    )


def test_every_insight_code_is_documented_and_emitted_codes_are_known() -> None:
    """docs/insights.md has a row per code in INSIGHT_CODES; every emitted code is listed."""
    from pathlib import Path

    from model_diff.analysis import INSIGHT_CODES

    doc = (Path(__file__).resolve().parents[2] / "docs" / "insights.md").read_text()
    for code in INSIGHT_CODES:
        assert f"| `{code}` |" in doc, code
    tuned = fine_tune(BASE)
    tuned["model.layers.2.mlp.down_proj.weight"][0, 0] = np.nan
    tuned["model.layers.1.mlp.up_proj.weight"] = BASE["model.layers.1.mlp.up_proj.weight"] * 3
    emitted = set(codes(analyse(BASE, tuned))) | set(codes(analyse(BASE, BASE)))
    assert emitted <= set(INSIGHT_CODES)
    assert len(emitted) >= 6


def test_without_element_metrics_the_pattern_is_not_analyzed_but_frozen_is_reported() -> None:
    """compute_element_wise=False: no relative changes, so not_analyzed; frozen still exact."""
    tuned = fine_tune(BASE)
    diffs, summary = ModelDiff(DiffConfig(compute_element_wise=False, include_unchanged=True)).diff(
        from_arrays(BASE), from_arrays(tuned)
    )
    a = DiffAnalyzer().analyze(diffs, summary)
    assert a["change_pattern"] == "not_analyzed"
    assert insight(a, "frozen-layers")["evidence"]["tensors"] == ["model.embed_tokens.weight"]
    json.dumps(a, allow_nan=False)


def test_new_and_empty_checkpoints_do_not_crash() -> None:
    """All tensors added -> architecture-changed; two empty checkpoints -> no_change."""
    a = analyse({}, BASE)
    assert codes(a) == ["architecture-changed"]
    assert len(insight(a, "architecture-changed")["evidence"]["added"]) == len(BASE)
    assert analyse({}, {})["change_pattern"] == "no_change"


SMALL = toy_transformer(n_blocks=3, d_model=8, vocab=16, seed=2)


@settings(max_examples=25, deadline=None)
@given(st.sets(st.sampled_from(sorted(SMALL))), st.integers(0, 3))
def test_property_frozen_layers_is_exactly_the_untouched_tensors(
    frozen: set[str], seed: int
) -> None:
    """For any set of frozen tensors: frozen_layers equals it and the pattern is a known one."""
    tuned = fine_tune(SMALL, seed=seed, frozen=frozen)
    a = analyse(SMALL, tuned)
    assert a["frozen_layers"] == frozen_truth(SMALL, tuned)
    assert a["change_pattern"] in {*PATTERN_CASES, "no_change"}
    json.dumps(a, allow_nan=False)


def test_real_torch_fine_tune_is_not_called_sparse_and_lists_the_frozen_embedding(
    request: pytest.FixtureRequest,
) -> None:
    """A real AdamW fine-tune of a torch TransformerEncoder (embeddings frozen): most tensors
    changed significantly (not "sparse", the original's answer for every fine-tune), the
    embedding is the one frozen tensor, and every encoder tensor gets a transformer type."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: worker threads only spin on a shared machine
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    torch.manual_seed(0)
    embed = torch.nn.Embedding(50, 16)
    encoder = torch.nn.TransformerEncoder(
        torch.nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, dropout=0.0),
        4,
        enable_nested_tensor=False,
    )
    head = torch.nn.Linear(16, 5)
    model = torch.nn.ModuleDict({"embed": embed, "encoder": encoder, "head": head})

    def train(steps: int, lr: float, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
        for _ in range(steps):
            x = torch.randint(0, 50, (8, 6), generator=g)
            logits = head(encoder(embed(x)).mean(1))
            loss = torch.nn.functional.cross_entropy(logits, x[:, 0] % 5)
            opt.zero_grad()
            loss.backward()
            opt.step()

    def state() -> dict[str, np.ndarray]:
        return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}

    train(30, 1e-3, 1)
    before = state()
    embed.weight.requires_grad_(False)
    train(10, 1e-4, 2)
    a = analyse(before, state())
    assert a["change_pattern"] != "sparse"
    assert a["pattern_evidence"]["significant_fraction"] > 0.5
    assert a["frozen_layers"] == ["embed.weight"]
    types = a["layer_analysis"]
    assert types["attention"]["count"] == 4 * 4  # in_proj weight/bias, out_proj weight/bias
    assert types["mlp"]["count"] == 4 * 4  # linear1/linear2 weight/bias
    assert types["norm"]["count"] == 4 * 4 and "other" not in types
