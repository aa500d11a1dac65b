"""ModelDiff: classification of tensor pairs, DiffConfig effects and the summary."""

from __future__ import annotations

import math
import threading

import ml_dtypes
import numpy as np
import pytest

from model_diff.checkpoint import from_arrays
from model_diff.diff import ChangeType, DiffConfig, ModelDiff, ParameterDiff, align_names


def _pair() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    old = {
        "layers.10.w": rng.standard_normal((8, 8)).astype(np.float32),
        "layers.2.w": rng.standard_normal((8, 8)).astype(np.float32),
        "embed_tokens.weight": rng.standard_normal((16, 4)).astype(np.float32),
        "gone": np.ones(3, np.float32),
        "cast": rng.standard_normal(10).astype(np.float32),
        "reshaped": np.ones((2, 3), np.float32),
    }
    new = dict(old)
    new["layers.2.w"] = old["layers.2.w"] + np.float32(0.5)
    new["embed_tokens.weight"] = np.vstack(
        [old["embed_tokens.weight"], np.zeros((4, 4), np.float32)]
    )
    del new["gone"]
    new["fresh"] = np.zeros(5, np.float32)
    new["cast"] = old["cast"].astype(ml_dtypes.bfloat16)
    new["reshaped"] = np.ones((3, 2), np.float32)
    return old, new


def _by_name(diffs):  # type: ignore[no-untyped-def]
    return {d.name: d for d in diffs}


def test_each_change_type_is_classified() -> None:
    """Added, removed, shape-, dtype-changed, modified and unchanged are told apart."""
    old, new = _pair()
    diffs, summary = ModelDiff(DiffConfig(include_unchanged=True)).diff(
        from_arrays(old), from_arrays(new)
    )
    kinds = {d.name: d.change_type for d in diffs}
    assert kinds == {
        "cast": ChangeType.DTYPE_CHANGED,
        "embed_tokens.weight": ChangeType.SHAPE_CHANGED,
        "fresh": ChangeType.ADDED,
        "gone": ChangeType.REMOVED,
        "layers.2.w": ChangeType.MODIFIED,
        "layers.10.w": ChangeType.UNCHANGED,
        "reshaped": ChangeType.SHAPE_CHANGED,
    }
    assert (
        summary.modified_parameters,
        summary.unchanged_parameters,
        summary.added_parameters,
        summary.removed_parameters,
        summary.shape_changed_parameters,
        summary.dtype_changed_parameters,
        summary.total_parameters,
    ) == (1, 1, 1, 1, 2, 1, 7)


def test_output_is_in_natural_name_order() -> None:
    """layers.2 sorts before layers.10, whatever the input order."""
    old, new = _pair()
    diffs, _ = ModelDiff(DiffConfig(include_unchanged=True)).diff(
        from_arrays(old), from_arrays(new)
    )
    names = [d.name for d in diffs]
    assert names.index("layers.2.w") < names.index("layers.10.w")


def test_modified_metrics_match_float64_definitions() -> None:
    """l2, l1, max, mean, cosine, relative change of a modified tensor follow DESIGN §5."""
    old, new = _pair()
    diffs, _ = ModelDiff().diff(from_arrays(old), from_arrays(new))
    d = _by_name(diffs)["layers.2.w"]
    a = old["layers.2.w"].astype(np.float64).ravel()
    b = new["layers.2.w"].astype(np.float64).ravel()
    delta = b - a
    assert d.l2_diff == pytest.approx(np.linalg.norm(delta), rel=1e-12)
    assert d.l1_diff == pytest.approx(np.abs(delta).sum(), rel=1e-12)
    assert d.max_diff == pytest.approx(np.abs(delta).max(), rel=1e-12)
    assert d.mean_diff == pytest.approx(np.abs(delta).mean(), rel=1e-12)
    assert d.cosine_sim == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b), rel=1e-12)
    assert d.relative_change == pytest.approx(np.linalg.norm(delta) / np.linalg.norm(a), rel=1e-12)
    assert d.change_ratio == 1.0


def test_vocab_resize_compares_overlapping_rows() -> None:
    """A first-axis resize compares the shared rows and counts the added ones."""
    old, new = _pair()
    diffs, _ = ModelDiff().diff(from_arrays(old), from_arrays(new))
    d = _by_name(diffs)["embed_tokens.weight"]
    assert (d.overlap_rows, d.added_rows) == (16, 4)
    assert d.l2_diff == 0.0


def test_dtype_change_still_measures_values() -> None:
    """fp32 -> bf16 is dtype_changed, with the rounding error measured."""
    old, new = _pair()
    diffs, _ = ModelDiff().diff(from_arrays(old), from_arrays(new))
    d = _by_name(diffs)["cast"]
    assert d.old_dtype == "float32" and d.new_dtype == "bfloat16"
    assert d.relative_change is not None and 0 < d.relative_change < 1e-2


def test_one_nan_is_a_change_and_is_counted() -> None:
    """A pair differing only by one NaN is modified, the NaN counted, and stays JSON-safe."""
    a = np.arange(10, dtype=np.float32)
    b = a.copy()
    b[3] = np.nan
    diffs, summary = ModelDiff().diff(from_arrays({"w": a}), from_arrays({"w": b}))
    (d,) = diffs
    assert d.change_type is ChangeType.MODIFIED
    assert d.new_stats is not None and d.new_stats.nan_count == 1
    assert d.old_stats is not None and d.old_stats.nan_count == 0
    assert d.finite_pairs == 9
    assert summary.nonfinite_tensors == ["w"]
    assert all(not (isinstance(v, float) and not math.isfinite(v)) for v in d.to_dict().values())


def test_to_dict_writes_every_field_in_order() -> None:
    """``ParameterDiff.to_dict`` (spelled out field by field) covers every field, in field
    order, with the pairing fields only where set, and makes each value JSON-safe."""
    import dataclasses

    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    (d,) = ModelDiff().diff(from_arrays({"w": a}), from_arrays({"w": a + 1}))[0]
    names = [f.name for f in dataclasses.fields(ParameterDiff)]
    pairing = ["old_name", "tied_to", "tied_by"]
    assert list(d.to_dict()) == [n for n in names if n not in pairing]
    full = dataclasses.replace(
        d, old_name="v", tied_to="u", tied_by="bytes", l2_diff=math.inf, low_rank={"k": 1}
    )
    out = full.to_dict()
    assert list(out) == names
    assert out["change_type"] == "modified" and out["old_shape"] == [3, 4]
    assert out["l2_diff"] is None and out["low_rank"] == {"k": 1}
    assert d.old_stats is not None and out["old_stats"] == d.old_stats.to_dict()
    stats = dataclasses.replace(d.old_stats, mean=math.nan, norm=-math.inf).to_dict()
    assert list(stats) == [f.name for f in dataclasses.fields(d.old_stats)]
    assert stats["mean"] is None and stats["norm"] is None and stats["std"] == d.old_stats.std
    assert (out["old_name"], out["tied_to"], out["tied_by"]) == ("v", "u", "bytes")


def test_bitwise_identical_nan_tensors_are_unchanged_but_counted() -> None:
    """Bytes decide "unchanged" (NaN == NaN bitwise), and the NaN is still reported."""
    a = np.array([1.0, np.nan], np.float32)
    diffs, summary = ModelDiff(DiffConfig(include_unchanged=True)).diff(
        from_arrays({"w": a}), from_arrays({"w": a.copy()})
    )
    assert diffs[0].change_type is ChangeType.UNCHANGED
    assert summary.nonfinite_tensors == ["w"]


def test_compute_element_wise_false_classifies_without_metrics() -> None:
    """Without the element-wise pass, change types are still exact but metrics are None."""
    old, new = _pair()
    diffs, _ = ModelDiff(DiffConfig(compute_element_wise=False)).diff(
        from_arrays(old), from_arrays(new)
    )
    d = _by_name(diffs)["layers.2.w"]
    assert d.change_type is ChangeType.MODIFIED and d.l2_diff is None and d.new_stats is None


def test_change_threshold_sets_change_ratio() -> None:
    """change_ratio counts elements whose |delta| exceeds change_threshold."""
    a = np.zeros(4, np.float32)
    b = np.array([0, 1e-7, 1e-3, 1], np.float32)
    ratios = []
    for thr in (0.0, 1e-6, 1e-2):
        (d,), _ = ModelDiff(DiffConfig(change_threshold=thr)).diff(
            from_arrays({"w": a}), from_arrays({"w": b})
        )
        ratios.append(d.change_ratio)
    assert ratios == [0.75, 0.5, 0.25]


def test_include_unchanged_controls_the_list_not_the_summary() -> None:
    """Unchanged tensors are listed only on request; the summary counts them either way."""
    old, new = _pair()
    short, s1 = ModelDiff(DiffConfig(include_unchanged=False)).diff(
        from_arrays(old), from_arrays(new)
    )
    full, s2 = ModelDiff(DiffConfig(include_unchanged=True)).diff(
        from_arrays(old), from_arrays(new)
    )
    assert len(full) == len(short) + 1
    assert s1.unchanged_parameters == s2.unchanged_parameters == 1


def test_normalize_by_size_weights_the_averages() -> None:
    """Averages are weighted by element count only with normalize_by_size."""
    old = {"big": np.ones(1000, np.float32), "small": np.ones(10, np.float32)}
    new = {"big": old["big"] * 1.01, "small": old["small"] * 2}
    _, w = ModelDiff(DiffConfig(normalize_by_size=True)).diff(from_arrays(old), from_arrays(new))
    _, u = ModelDiff(DiffConfig(normalize_by_size=False)).diff(from_arrays(old), from_arrays(new))
    assert u.avg_relative_change == pytest.approx((0.01 + 1.0) / 2, rel=1e-5)
    assert w.avg_relative_change == pytest.approx((0.01 * 1000 + 1.0 * 10) / 1010, rel=1e-5)


def test_top_k_layers_limits_and_ranks() -> None:
    """top_changed_layers lists the k largest relative changes, largest first."""
    old = {f"l{i}": np.ones(4, np.float32) for i in range(5)}
    new = {f"l{i}": np.ones(4, np.float32) * (1 + i / 10) for i in range(5)}
    _, s = ModelDiff(DiffConfig(top_k_layers=2)).diff(from_arrays(old), from_arrays(new))
    assert s.top_changed_layers == ["l4", "l3"]


def test_wrapper_prefix_is_aligned() -> None:
    """A DDP ``module.`` prefix on one side only is stripped (align_prefixes)."""
    a = {"module.w": np.ones(3, np.float32)}
    b = {"w": np.ones(3, np.float32)}
    old, new = align_names(from_arrays(a), from_arrays(b))
    assert list(old.tensors) == list(new.tensors) == ["w"]
    _, s = ModelDiff(DiffConfig(align_prefixes=False)).diff(from_arrays(a), from_arrays(b))
    assert (s.added_parameters, s.removed_parameters) == (1, 1)


def test_a_renamed_tensor_keeps_every_field() -> None:
    """``TensorRef.with_name`` (what name alignment uses) copies every slot, page release
    included; only the name differs."""
    from model_diff.checkpoint import TensorRef
    from model_diff.dtypes import from_name

    released: list[tuple[int, int]] = []
    ref = TensorRef(
        "module.w",
        from_name("float32"),
        (2, 3),
        lambda: np.zeros(6, np.float32),
        release=lambda: released.append((-1, -1)),
        release_range=lambda a, b: released.append((a, b)),
        source="shard-1.safetensors",
    )
    alias = ref.with_name("w")
    assert alias.name == "w" and ref.name == "module.w"
    for slot in TensorRef.__slots__:
        if slot != "name":
            assert getattr(alias, slot) is getattr(ref, slot) or getattr(alias, slot) == getattr(
                ref, slot
            ), slot
    alias.release_range(1, 2)
    alias.release()
    assert released == [(4, 8), (-1, -1)]
    view = from_arrays({"module.w": np.zeros(3, np.float32)}).renamed(lambda n: n[7:])
    assert list(view.tensors) == ["w"]


def test_worker_count_does_not_change_results() -> None:
    """One worker and four give identical results."""
    old, new = _pair()
    r1 = ModelDiff(DiffConfig(num_workers=1, include_unchanged=True)).diff(
        from_arrays(old), from_arrays(new)
    )
    r4 = ModelDiff(DiffConfig(num_workers=4, include_unchanged=True)).diff(
        from_arrays(old), from_arrays(new)
    )
    assert [d.to_dict() for d in r1[0]] == [d.to_dict() for d in r4[0]]
    assert r1[1] == r4[1]


def test_bad_config_values_are_refused() -> None:
    """Negative thresholds and unknown low_rank modes are errors, not silent defaults."""
    with pytest.raises(ValueError, match="change_threshold"):
        DiffConfig(change_threshold=-1)
    with pytest.raises(ValueError, match="low_rank"):
        DiffConfig(low_rank="sometimes")


def test_scalar_tensors_keep_their_shape(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A 0-d tensor stays 0-d through from_arrays and the safetensors writer."""
    from model_diff.formats import open_checkpoint
    from model_diff.toy import save_safetensors

    save_safetensors(tmp_path / "s.safetensors", {"step": np.array(3, np.int64)})
    with open_checkpoint(tmp_path / "s.safetensors") as ckpt:
        assert ckpt["step"].shape == () and ckpt["step"].array().tolist() == [3]
    assert from_arrays({"x": np.array(2.0)})["x"].shape == ()


def test_auto_low_rank_takes_the_most_changed_matrices_within_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ "auto" analyses the most-changed 2-D deltas until the element budget is spent;
    True analyses every one, False none."""
    from model_diff import lowrank

    rng = np.random.default_rng(3)
    old = {f"w{i}": rng.standard_normal((64, 64)).astype(np.float32) for i in range(5)}
    new = {
        k: v + np.float32(0.01 * (i + 1)) * rng.standard_normal((64, 64)).astype(np.float32)
        for i, (k, v) in enumerate(old.items())
    }
    monkeypatch.setattr(lowrank, "AUTO_BUDGET_ELEMENTS", 3 * 64 * 64)

    def analysed(mode: bool | str) -> list[str]:
        diffs, _ = ModelDiff(DiffConfig(low_rank=mode)).diff(from_arrays(old), from_arrays(new))
        return [d.name for d in diffs if d.low_rank is not None]

    assert analysed("auto") == ["w2", "w3", "w4"]
    assert analysed(True) == ["w0", "w1", "w2", "w3", "w4"]
    assert analysed(False) == []


def test_auto_low_rank_takes_at_most_its_matrix_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many small matrices fit the element budget; "auto" still analyses at most
    AUTO_MAX_MATRICES of them, the most changed."""
    from model_diff import lowrank

    rng = np.random.default_rng(4)
    old = {f"w{i}": rng.standard_normal((8, 16)).astype(np.float32) for i in range(12)}
    new = {
        k: v + np.float32(0.01 * (i + 1)) * rng.standard_normal((8, 16)).astype(np.float32)
        for i, (k, v) in enumerate(old.items())
    }
    monkeypatch.setattr(lowrank, "AUTO_MAX_MATRICES", 4)
    diffs, _ = ModelDiff(DiffConfig(low_rank="auto")).diff(from_arrays(old), from_arrays(new))
    assert [d.name for d in diffs if d.low_rank is not None] == ["w8", "w9", "w10", "w11"]


def test_many_small_tensors_run_on_the_calling_thread() -> None:
    """Items averaging under POOL_MIN_ITEM_BYTES run on the calling thread however many bytes
    they hold in all (threads contending for the GIL over Python work only slow it down);
    large items get the pool."""
    from model_diff import metrics

    many = 64 * metrics.POOL_MIN_BYTES // metrics.POOL_MIN_ITEM_BYTES
    with metrics.ordered_map(64 * metrics.POOL_MIN_BYTES, 2, many + 1) as each:
        assert each is map
    with metrics.ordered_map(64 * metrics.POOL_MIN_BYTES, 2, many) as each:
        assert each is not map
        names = list(each(lambda _: threading.current_thread().name, range(100)))
        assert threading.current_thread().name not in names


def test_stats_if_equal_matches_array_stats_and_spots_a_late_difference() -> None:
    """The fused equal-and-stats pass gives array_stats for equal bytes, None otherwise."""
    from model_diff import metrics

    x = np.random.default_rng(5).standard_normal(metrics.CHUNK_ELEMENTS * 2 + 17)
    x = x.astype(np.float32)
    assert metrics.stats_if_equal(x, x.copy()) == metrics.array_stats(x)
    y = x.copy()
    y[-1] = np.nextafter(y[-1], np.float32(np.inf))  # one ulp, in the last (partial) chunk
    assert metrics.stats_if_equal(x, y) is None
    assert metrics.stats_if_equal(x, x.view(np.int32)) is None  # same bytes, other dtype


# -- large tensors: parts on the part pool, pages released part by part -------------------------


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """Chunks of 1024 and parts of 4096 elements, so a few thousand elements make a large
    tensor."""
    from model_diff import metrics

    monkeypatch.setattr(metrics, "CHUNK_ELEMENTS", 1024)
    monkeypatch.setattr(metrics, "PART_ELEMENTS", 4096)
    return 1024, 4096


def _recorder() -> tuple[list[tuple[int, int]], object]:
    import threading

    seen: list[tuple[int, int]] = []
    lock = threading.Lock()

    def done(start: int, stop: int) -> None:
        with lock:
            seen.append((start, stop))

    return seen, done


def test_parts_give_the_same_metrics_on_any_number_of_threads(small_parts) -> None:  # type: ignore[no-untyped-def]
    """A pair longer than a part is split into parts merged in part order: one thread and two
    give bit-identical results, within float64 rounding of the single-pass answer; ``done``
    hears of every part exactly once."""
    from model_diff import metrics

    _, part = small_parts
    rng = np.random.default_rng(11)
    n = part * 5 + 123
    a = rng.standard_normal(n).astype(np.float32)
    b = (a + rng.standard_normal(n).astype(np.float32) * np.float32(0.01)).astype(np.float32)
    b[part * 3 + 7] = np.nan  # a NaN inside one part is counted once, after the merge
    seen, done = _recorder()
    one = metrics.diff_arrays(a, b, 1e-3, workers=1)
    two = metrics.diff_arrays(a, b, 1e-3, done=done, workers=2)  # type: ignore[arg-type]
    assert one == two
    assert sorted(seen) == [(s, min(n, s + part)) for s in range(0, n, part)]
    assert two.new.nan_count == 1 and two.finite_pairs == n - 1
    metrics.PART_ELEMENTS = 1 << 30  # the same pair in one part (monkeypatch restores it)
    whole = metrics.diff_arrays(a, b, 1e-3)
    for k in ("l2_diff", "l1_diff", "max_diff", "mean_signed_diff", "cosine_sim"):
        assert getattr(two, k) == pytest.approx(getattr(whole, k), rel=1e-12), k
    assert (two.change_ratio, two.sign_flip_ratio) == (whole.change_ratio, whole.sign_flip_ratio)
    assert two.old.min == whole.old.min and two.new.max == whole.new.max


def test_parts_of_side_stats_and_of_the_equal_check(small_parts) -> None:  # type: ignore[no-untyped-def]
    """array_stats and stats_if_equal split the same way; a difference in a late part makes
    stats_if_equal answer None (the other parts stop early) and every part is still told."""
    from model_diff import metrics

    _, part = small_parts
    n = part * 4 + 5
    x = np.random.default_rng(12).standard_normal(n).astype(ml_dtypes.bfloat16)
    seen, done = _recorder()
    s1 = metrics.array_stats(x, workers=1)
    assert metrics.array_stats(x, done=done, workers=2) == s1  # type: ignore[arg-type]
    assert sorted(seen) == [(s, min(n, s + part)) for s in range(0, n, part)]
    assert metrics.stats_if_equal(x, x.copy(), workers=2) == s1
    y = x.copy()
    y[part * 3 + 1] = -y[part * 3 + 1] if y[part * 3 + 1] != 0 else 1
    seen.clear()
    assert metrics.stats_if_equal(x, y, done=done, workers=2) is None  # type: ignore[arg-type]
    assert sorted(seen) == [(s, min(n, s + part)) for s in range(0, n, part)]


def test_model_diff_releases_a_large_tensor_part_by_part(small_parts) -> None:  # type: ignore[no-untyped-def]
    """ModelDiff hands each read part of a large pair back to both readers (release_range),
    element ranges turned into bytes, then releases the whole tensor as before."""
    from model_diff.checkpoint import TensorRef
    from model_diff.dtypes import from_numpy

    _, part = small_parts
    n = part * 3
    a = np.arange(n, dtype=np.float32)
    calls: dict[str, list[object]] = {"old": [], "new": []}

    def ref(label: str, arr: np.ndarray) -> TensorRef:
        return TensorRef(
            "w",
            from_numpy(arr.dtype),
            arr.shape,
            lambda: arr,
            release=lambda: calls[label].append("all"),
            release_range=lambda lo, hi: calls[label].append((lo, hi)),
            source=label,
        )

    d = ModelDiff(DiffConfig(num_workers=2)).diff_tensor(ref("old", a), ref("new", a + 1))
    assert d.change_type is ChangeType.MODIFIED and d.max_diff == 1.0
    for label in ("old", "new"):
        ranges = sorted(c for c in calls[label] if c != "all")  # type: ignore[type-var]
        assert ranges == [(s * 4, (s + part) * 4) for s in range(0, n, part)]
        assert calls[label][-1] == "all"
