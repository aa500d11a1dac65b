"""Name pairing (model_diff.alignment): rules, renames by bytes, tied duplicates, on
in-memory checkpoints. Real files written by torch/safetensors: test_pairing_files.py."""

from __future__ import annotations

import numpy as np

from model_diff.alignment import find_rules, is_constant, pair_checkpoints
from model_diff.checkpoint import NameMapping, NameRule, from_arrays
from model_diff.diff import ChangeType, DiffConfig, ModelDiff


def _rand(seed: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _diff(old: dict[str, np.ndarray], new: dict[str, np.ndarray], **kw: object):  # type: ignore[no-untyped-def]
    cfg = DiffConfig(include_unchanged=True, **kw)  # type: ignore[arg-type]
    diffs, summary = ModelDiff(cfg).diff(from_arrays(old), from_arrays(new))
    return {d.name: d for d in diffs}, summary


def test_separator_rule_maps_and_is_stated_once() -> None:
    """Spaces vs underscores: one rule pairs every tensor; a modified one is compared under
    it as modified; the summary states the rule once with its count."""
    old = {f"block {i}.conv weight": _rand(i, 4, 4) for i in range(5)}
    new = {k.replace(" ", "_"): v.copy() for k, v in old.items()}
    new["block_0.conv_weight"] += 1.0
    by, s = _diff(old, new)
    assert set(by) == set(new)
    assert by["block_0.conv_weight"].change_type is ChangeType.MODIFIED
    assert by["block_0.conv_weight"].old_name == "block 0.conv weight"
    assert s.unchanged_parameters == 4 and s.added_parameters == s.removed_parameters == 0
    assert s.name_mapping is not None
    assert s.name_mapping["description"] == "names mapped: ' ' -> '_' in old names (5 tensors)"
    assert [r["count"] for r in s.name_mapping["rules"]] == [5]


def test_prefix_and_separator_compose() -> None:
    """A Lightning ``model.`` prefix and spaces on the old side only: one composite rule."""
    old = {f"model.layer {i}.w": _rand(i, 3) for i in range(3)}
    new = {f"layer_{i}.w": old[f"model.layer {i}.w"] for i in range(3)}
    by, s = _diff(old, new)
    assert all(d.change_type is ChangeType.UNCHANGED for d in by.values())
    assert s.name_mapping is not None
    assert (
        "' ' -> '_' and prefix 'model.' dropped in old names (3 tensors)"
        in (s.name_mapping["description"])
    )


def test_added_prefix_rule() -> None:
    """The new side wraps every tensor in ``backbone.``: a prefix added to old names."""
    old = {"a.w": _rand(0, 3), "b.w": _rand(1, 3)}
    new = {f"backbone.{k}": v + 1 for k, v in old.items()}
    by, s = _diff(old, new)
    assert {d.change_type for d in by.values()} == {ChangeType.MODIFIED}
    assert by["backbone.a.w"].old_name == "a.w"
    assert s.name_mapping is not None
    assert "prefix 'backbone.' added" in s.name_mapping["description"]


def test_digits_are_never_separators() -> None:
    """``layers.1`` -> ``layers.2`` is another tensor, not a spelling: no rule pairs them."""
    old = {"layers.1.w": _rand(0, 3), "layers.1.b": _rand(1, 3)}
    new = {"layers.2.w": _rand(2, 3), "layers.2.b": _rand(3, 3)}
    assert find_rules(old, new) == []
    _, s = _diff(old, new)
    assert (s.added_parameters, s.removed_parameters) == (2, 2)


def test_a_single_pair_needs_a_second_before_it_is_a_rule() -> None:
    """One unpaired name among others is not evidence of a consistent rule."""
    old = {"x y": _rand(0, 3), "other": _rand(1, 4)}
    new = {"x_y": _rand(2, 3), "fresh": _rand(3, 5)}
    assert find_rules(old, new) == []
    # ... unless it is everything left unpaired on both sides
    assert [r.count for r, _ in find_rules({"x y": 1}, {"x_y": 1})] == [1]


def test_rename_by_identical_bytes() -> None:
    """A tensor moved under a new name, bytes unchanged: renamed, not added + removed."""
    w = _rand(0, 6)
    by, s = _diff(
        {"head.w": w, "keep": _rand(1, 2)}, {"classifier.w": w.copy(), "keep": _rand(1, 2)}
    )
    d = by["classifier.w"]
    assert d.change_type is ChangeType.RENAMED and d.old_name == "head.w"
    assert not d.is_changed
    assert (s.renamed_parameters, s.added_parameters, s.removed_parameters) == (1, 0, 0)
    assert s.to_dict()["renamed_parameters"] == 1


def test_constant_and_ambiguous_bytes_are_not_renames() -> None:
    """Zeros match every zero tensor of their shape, and two equal candidates are a guess:
    both stay added/removed."""
    w = _rand(0, 4)
    old = {"zeros_a": np.zeros(3, np.float32), "p": w, "q": w.copy()}
    new = {"zeros_b": np.zeros(3, np.float32), "r": w.copy()}
    by, s = _diff(old, new)
    assert by["zeros_b"].change_type is ChangeType.ADDED
    assert by["r"].change_type is ChangeType.ADDED
    assert s.renamed_parameters == 0


def test_tie_by_bytes_and_not_by_constant() -> None:
    """A tensor dropped on the new side that equals one both sides keep is a tied duplicate
    (bytes); an all-ones tensor equal to another all-ones one is a real removal."""
    emb = _rand(0, 10, 4)
    old = {
        "embed.weight": emb,
        "lm_head.weight": emb.copy(),
        "norm.weight": np.ones(4, np.float32),
        "extra_norm.weight": np.ones(4, np.float32),
    }
    new = {"embed.weight": emb + 0.5, "norm.weight": np.ones(4, np.float32)}
    by, s = _diff(old, new)
    tie = by["lm_head.weight"]
    assert tie.change_type is ChangeType.TIED
    assert (tie.tied_to, tie.tied_by) == ("embed.weight", "bytes")
    assert by["extra_norm.weight"].change_type is ChangeType.REMOVED
    assert (s.tied_parameters, s.removed_parameters) == (1, 1)


def test_a_removed_tensor_with_other_bytes_is_removed() -> None:
    """Same shape as a kept tensor but other values: an architecture change, not a tie."""
    old = {"embed.weight": _rand(0, 5, 2), "lm_head.weight": _rand(1, 5, 2)}
    new = {"embed.weight": _rand(0, 5, 2)}
    by, _ = _diff(old, new)
    assert by["lm_head.weight"].change_type is ChangeType.REMOVED


def test_order_of_tensors_does_not_matter() -> None:
    """Pairing walks names in natural order: the same tensors in another insertion order
    (and another file order) give the same records."""
    old = {f"enc.layer {i}.w": _rand(i, 3) for i in range(6)}
    old["moved"] = _rand(40, 7)
    new = {k.replace(" ", "_"): v + (1 if "3" in k else 0) for k, v in old.items() if k != "moved"}
    new["elsewhere"] = old["moved"].copy()
    forward = _diff(old, new)[0]
    backward = _diff(dict(reversed(old.items())), dict(reversed(new.items())))[0]
    assert [d.to_dict() for d in forward.values()] == [d.to_dict() for d in backward.values()]


def test_align_prefixes_false_compares_names_as_stored() -> None:
    """align_prefixes=False: no rule, no rename (ties are still recognised)."""
    w = _rand(0, 4)
    e = _rand(2, 3)
    old = {"a b": w, "c d": _rand(1, 4), "e.w": e, "tie": e.copy()}
    new = {"a_b": w.copy(), "c_d": _rand(1, 4), "e.w": e}
    _, s = _diff(old, new, align_prefixes=False)
    assert s.name_mapping is None
    assert (s.added_parameters, s.removed_parameters, s.tied_parameters) == (2, 2, 1)


def test_wrapper_prefix_is_stated() -> None:
    """A DDP ``module.`` on every old name is dropped, and that is stated."""
    old = {"module.a": _rand(0, 3), "module.b": _rand(1, 3)}
    new = {"a": old["module.a"], "b": old["module.b"]}
    pairing = pair_checkpoints(from_arrays(old), from_arrays(new))
    assert pairing.rules == (NameRule("old", 2, drop="module."),)
    assert list(pairing.old.tensors) == ["a", "b"]


def test_name_mapping_describes_format_then_rules() -> None:
    """A converted format's mapping and rules found after it are one statement."""
    m = NameMapping(
        "GGUF llama", 3, 3, side="old", rules=(NameRule("old", 2, find=" ", replace="_"),)
    )
    assert m.describe() == (
        "names mapped from GGUF llama, 3 of 3; then ' ' -> '_' in old names (2 tensors)"
    )
    assert m.to_dict()["rules"][0]["find"] == " "
    assert "rules" not in NameMapping("GGUF llama", 3, 3).to_dict()


def test_is_constant() -> None:
    """Constant means every element has the same bytes (-0.0 and 0.0 differ)."""
    a = from_arrays(
        {
            "c": np.full(5, 2.5, np.float32),
            "v": np.arange(5, dtype=np.float32),
            "z": np.array([0.0, -0.0], np.float32),
            "big": np.ones(3_000_000, np.int8),
        }
    )
    assert is_constant(a.tensors["c"]) and is_constant(a.tensors["big"])
    assert not is_constant(a.tensors["v"]) and not is_constant(a.tensors["z"])
