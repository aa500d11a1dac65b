"""Three-way analysis: the classification rule, and the update statistics of compare3 against
a float64 reference on a MiniLM-sized base and two fine-tunes (acceptance 4)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from model_diff import ThreeWay, compare3_files
from model_diff.checkpoint import from_arrays
from model_diff.threeway import Version, compare3, decide, interference_label
from model_diff.toy import fine_tune, save_safetensors, toy_transformer

V1 = Version("float32", (2,), "k1")
V2 = Version("float32", (2,), "k2")
V3 = Version("float32", (2,), "k3")


@pytest.mark.parametrize(
    ("b", "o", "t", "kind", "conflict"),
    [
        (V1, V1, V1, "unchanged", None),
        (V1, V2, V2, "both", None),
        (V1, None, None, "both", None),
        (None, V2, V2, "both", None),
        (V1, V2, V1, "ours", None),
        (V1, None, V1, "ours", None),
        (None, V2, None, "ours", None),
        (V1, V1, V3, "theirs", None),
        (V1, V1, None, "theirs", None),
        (None, None, V3, "theirs", None),
        (V1, V2, V3, "conflict", "content"),
        (None, V2, V3, "conflict", "add-add"),
        (V1, None, V3, "conflict", "delete-modify"),
        (V1, V2, None, "conflict", "delete-modify"),
        (V1, V2, Version("float32", (1, 2), "k3"), "conflict", "shape"),
        (V1, V2, Version("float16", (2,), "k3"), "conflict", "dtype"),
    ],
)
def test_the_three_way_rule(
    b: Version | None,
    o: Version | None,
    t: Version | None,
    kind: str,
    conflict: str | None,
) -> None:
    ch = decide("x", b, o, t)
    assert (ch.kind, ch.conflict) == (kind, conflict)


def test_interference_labels() -> None:
    assert interference_label(None) == "none"
    assert interference_label(0.5) == "aligned"
    assert interference_label(0.05) == "independent"
    assert interference_label(-0.3) == "opposing"


# -- a MiniLM-sized triple (6 blocks, d_model 384, d_ff 1536, vocab 8192: 20.5M parameters) --

N_BLOCKS = 6


def _block(name: str) -> int | None:
    return int(name.split(".")[2]) if name.startswith("model.layers.") else None


def _ours_frozen(name: str) -> bool:
    """ours retrains attention in every block and the head."""
    return not ("self_attn" in name or name == "lm_head.weight")


def _theirs_frozen(name: str) -> bool:
    """theirs adapts blocks 3-5, everything in them."""
    block = _block(name)
    return block is None or block < 3


@pytest.fixture(scope="module")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    d = tmp_path_factory.mktemp("minilm")
    base = toy_transformer(n_blocks=N_BLOCKS, d_model=384, vocab=8192, d_ff=1536, seed=0)
    ours = fine_tune(base, seed=1, frozen=_ours_frozen)
    theirs = fine_tune(base, seed=2, frozen=_theirs_frozen)
    # the same change on both sides, and one pair of updates made to oppose each other
    same = base["model.norm.weight"] + np.float32(0.5)
    ours["model.norm.weight"] = same
    theirs["model.norm.weight"] = same.copy()
    w = "model.layers.4.self_attn.o_proj.weight"
    theirs[w] = (base[w] - (ours[w] - base[w]) * np.float32(0.5)).astype(np.float32)
    # a NaN in one version: that element is left out of the sums and counted
    v = "model.layers.5.self_attn.v_proj.weight"
    theirs[v][0, 0] = np.nan
    paths = {}
    for name, state in (("base", base), ("ours", ours), ("theirs", theirs)):
        paths[name] = d / f"{name}.safetensors"
        save_safetensors(paths[name], state)
    result = compare3_files(paths["base"], paths["ours"], paths["theirs"])
    return {"base": base, "ours": ours, "theirs": theirs, "result": result}


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def test_minilm_classification(minilm: dict[str, object]) -> None:
    result = minilm["result"]
    base = minilm["base"]
    assert isinstance(result, ThreeWay) and isinstance(base, dict)
    kinds = {t.change.name: t.change.kind for t in result.tensors}
    assert len(kinds) == len(base) == 2 + 1 + 9 * N_BLOCKS
    attn_late = {n for n in base if "self_attn" in n and (_block(n) or 0) >= 3}
    assert {n for n, k in kinds.items() if k == "conflict"} == attn_late
    assert {n for n, k in kinds.items() if k == "both"} == {"model.norm.weight"}
    assert {n for n, k in kinds.items() if k == "ours"} == {
        n for n in base if not _ours_frozen(n) and n not in attn_late
    }
    assert {n for n, k in kinds.items() if k == "theirs"} == {
        n for n in base if not _theirs_frozen(n) and n not in attn_late
    }
    assert all(
        t.change.conflict == "content" for t in result.tensors if t.change.kind == "conflict"
    )


def test_minilm_update_statistics_match_a_float64_reference(minilm: dict[str, object]) -> None:
    """Both-changed tensors: cosine, sign disagreement, norms and ratio within 1e-9 relative."""
    result = minilm["result"]
    assert isinstance(result, ThreeWay)
    base, ours, theirs = (minilm[k] for k in ("base", "ours", "theirs"))
    checked = 0
    for t in result.tensors:
        if t.change.kind not in ("both", "conflict"):
            assert t.stats is None
            continue
        s = t.stats
        assert s is not None
        b = base[t.change.name].astype(np.float64).ravel()  # type: ignore[index]
        o = ours[t.change.name].astype(np.float64).ravel()  # type: ignore[index]
        th = theirs[t.change.name].astype(np.float64).ravel()  # type: ignore[index]
        ok = np.isfinite(b) & np.isfinite(o) & np.isfinite(th)
        do, dt = (o - b)[ok], (th - b)[ok]
        no, nt = math.sqrt(float(np.sum(do * do))), math.sqrt(float(np.sum(dt * dt)))
        both = (do != 0) & (dt != 0)
        disagree = both & (np.sign(do) != np.sign(dt))
        assert s.nonfinite == int((~ok).sum())
        assert s.both_changed == int(both.sum()) and s.sign_disagree == int(disagree.sum())
        assert _rel(s.ours_norm, no) < 1e-9 and _rel(s.theirs_norm, nt) < 1e-9
        assert s.cosine is not None and s.norm_ratio is not None and s.sign_disagreement is not None
        assert _rel(s.cosine, float(np.dot(do, dt)) / (no * nt)) < 1e-9
        assert _rel(s.norm_ratio, no / nt) < 1e-9
        assert _rel(s.sign_disagreement, disagree.sum() / both.sum()) < 1e-9
        checked += 1
    assert checked == 13
    stats = {t.change.name: t.stats for t in result.tensors}
    same = stats["model.norm.weight"]
    assert same is not None and same.cosine == pytest.approx(1.0) and same.sign_disagree == 0
    opposed = stats["model.layers.4.self_attn.o_proj.weight"]
    assert opposed is not None and opposed.cosine is not None and opposed.cosine < -0.99
    assert stats["model.layers.5.self_attn.v_proj.weight"].nonfinite == 1  # type: ignore[union-attr]


def test_minilm_groups_and_readiness(minilm: dict[str, object]) -> None:
    result = minilm["result"]
    assert isinstance(result, ThreeWay)
    r = result.readiness
    assert (r.total, r.conflicts, r.content_conflicts, r.structural_conflicts) == (57, 12, 12, 0)
    assert r.exact == 45 and r.arithmetic == 11  # the NaN tensor cannot be merged by arithmetic
    # the pooled cosine over the content conflicts is the ratio of the summed inner products
    conflicts = [t.stats for t in result.tensors if t.change.kind == "conflict"]
    assert r.opposing == sum(1 for s in conflicts if s and s.cosine is not None and s.cosine < 0)
    assert r.opposing >= 1
    dot = sum(s.dot for s in conflicts if s)
    osq = sum(s.ours_sq for s in conflicts if s)
    tsq = sum(s.theirs_sq for s in conflicts if s)
    assert r.cosine == pytest.approx(dot / math.sqrt(osq * tsq), rel=1e-12)
    assert r.interference == interference_label(r.cosine)
    types = {g.label: g for g in result.layer_types}
    assert list(types) == ["embedding", "attention", "mlp", "norm", "head"]
    assert types["attention"].counts == {
        "unchanged": 0,
        "ours": 12,
        "theirs": 0,
        "both": 0,
        "conflict": 12,
    }
    assert types["head"].counts["ours"] == 1 and types["norm"].counts["both"] == 1
    blocks = [g.label for g in result.blocks]
    assert blocks == [f"model.layers.{i}" for i in range(N_BLOCKS)] + ["(outside blocks)"]
    late = result.blocks[4]
    assert late.counts["conflict"] == 4 and late.counts["theirs"] == 5
    assert late.cosine is not None and result.blocks[0].cosine is None


def test_integer_and_relayout_tensors_have_no_update_stats() -> None:
    base = from_arrays(
        {"i": np.arange(4), "f": np.zeros(3, np.float32), "s": np.zeros(4, np.float32)}
    )
    ours = from_arrays(
        {"i": np.arange(4) + 1, "f": np.ones(3, np.float32), "s": np.ones(4, np.float32)}
    )
    theirs = from_arrays(
        {"i": np.arange(4) + 2, "f": np.full(3, 2, np.float32), "s": np.zeros((2, 2), np.float32)}
    )
    result = compare3(base, ours, theirs)
    by = {t.change.name: t for t in result.tensors}
    assert by["i"].change.conflict == "content" and by["i"].stats is None
    assert by["s"].change.conflict == "shape" and by["s"].stats is None
    assert by["f"].stats is not None and by["f"].stats.cosine == pytest.approx(1.0)
    assert result.readiness.structural_conflicts == 1 and result.readiness.arithmetic == 1


def test_zero_updates_give_no_cosine_not_a_number() -> None:
    """An update of zero norm (values changed only in bytes: -0.0) has no direction."""
    base = from_arrays({"w": np.zeros(3, np.float32)})
    ours = from_arrays({"w": np.array([-0.0, 0, 0], np.float32)})
    theirs = from_arrays({"w": np.ones(3, np.float32)})
    s = compare3(base, ours, theirs).tensors[0].stats
    assert s is not None and s.cosine is None and s.sign_disagreement is None
    assert s.norm_ratio == 0.0 and s.to_dict()["cosine"] is None


def test_labels_default_to_checkpoint_paths(tmp_path: Path) -> None:
    save_safetensors(tmp_path / "x.safetensors", {"w": np.zeros(2, np.float32)})
    result = compare3_files(*(tmp_path / "x.safetensors" for _ in range(3)))
    assert result.inputs["ours"]["path"] == str(tmp_path / "x.safetensors")
    assert result.readiness.conflicts == 0 and result.counts["unchanged"] == 1
