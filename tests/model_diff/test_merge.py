"""The merge engine: every three-way rule, every strategy against a float64 numpy reference,
nothing written on conflicts or bad input."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy as stn

from model_diff import merge_checkpoints
from model_diff.errors import CheckpointError, ModelDiffError, UnwritableCheckpointError
from model_diff.merge import MergeResult, ties_keep_count
from model_diff.toy import save_safetensors

State = Mapping[str, np.ndarray]


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _base() -> dict[str, np.ndarray]:
    r = _rng(0)
    return {
        "a": r.standard_normal((8, 6)).astype(np.float32),
        "b": r.standard_normal(40).astype(np.float32),
        "c": r.standard_normal((3, 3)).astype(np.float32),
        "d": r.standard_normal(5).astype(np.float32),
        "steps": np.arange(4, dtype=np.int64),
    }


def _write(tmp: Path, name: str, state: State, metadata: dict[str, str] | None = None) -> str:
    path = tmp / f"{name}.safetensors"
    save_safetensors(path, state, metadata)
    return str(path)


def _triple(tmp: Path, base: State, ours: State, theirs: State) -> tuple[str, str, str, str]:
    return (
        _write(tmp, "base", base),
        _write(tmp, "ours", ours),
        _write(tmp, "theirs", theirs),
        str(tmp / "out.safetensors"),
    )


def _merge(
    tmp: Path, base: State, ours: State, theirs: State, strategy: str = "fail", **kw: object
) -> tuple[MergeResult, dict[str, np.ndarray] | None]:
    paths = _triple(tmp, base, ours, theirs)
    result = merge_checkpoints(*paths, strategy=strategy, **kw)  # type: ignore[arg-type]
    out = stn.load_file(paths[3]) if os.path.exists(paths[3]) else None
    return result, out


def _outcome(result: MergeResult, name: str) -> str:
    return next(t.result for t in result.tensors if t.name == name)


def _same(x: np.ndarray, y: np.ndarray) -> bool:
    return x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


# -- the rules ------------------------------------------------------------------------------


def test_one_side_changes_are_taken_exactly_from_that_side(tmp_path: Path) -> None:
    """Modified/added/removed on one side only -> that side, byte for byte."""
    base = _base()
    ours = dict(base, a=base["a"] + 1, new_ours=np.ones(3, np.float32))
    del ours["d"]
    theirs = dict(base, b=base["b"] * 3, new_theirs=np.full(2, 7, np.float16))
    del theirs["c"]
    result, out = _merge(tmp_path, base, ours, theirs)
    assert result.written and not result.conflicts
    assert out is not None
    assert sorted(out) == ["a", "b", "new_ours", "new_theirs", "steps"]
    assert _same(out["a"], ours["a"]) and _same(out["b"], theirs["b"])
    assert _same(out["new_ours"], ours["new_ours"]) and _same(
        out["new_theirs"], theirs["new_theirs"]
    )
    assert _same(out["steps"], base["steps"])
    got = {t.name: t.result for t in result.tensors}
    assert got == {
        "a": "ours",
        "b": "theirs",
        "c": "removed",
        "d": "removed",
        "new_ours": "ours",
        "new_theirs": "theirs",
        "steps": "kept",
    }


def test_the_same_change_on_both_sides_is_taken_once(tmp_path: Path) -> None:
    base = _base()
    changed = dict(base, a=base["a"] - 2, added=np.zeros(2, np.float32))
    del changed["d"]
    result, out = _merge(tmp_path, base, changed, dict(changed))
    assert result.written and out is not None
    assert _same(out["a"], changed["a"]) and "d" not in out and "added" in out
    assert _outcome(result, "a") == "both" and _outcome(result, "d") == "removed"


def test_bytes_decide_not_values(tmp_path: Path) -> None:
    """-0.0 vs 0.0 is a change (bytes differ) and NaN == NaN is not (bytes equal)."""
    base = {"z": np.zeros(4, np.float32), "n": np.full(2, np.nan, np.float32)}
    ours = {"z": np.array([0, -0.0, 0, 0], np.float32), "n": base["n"].copy()}
    result, out = _merge(tmp_path, base, ours, dict(base))
    assert out is not None and _outcome(result, "z") == "ours" and _outcome(result, "n") == "kept"
    assert np.signbit(out["z"][1])


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("content", "content"),
        ("shape", "shape"),
        ("dtype", "dtype"),
        ("del", "delete-modify"),
        ("add", "add-add"),
    ],
)
def test_conflicts_fail_by_default_and_write_nothing(
    tmp_path: Path, name: str, reason: str
) -> None:
    base = _base()
    ours, theirs = dict(base), dict(base)
    if name == "content":
        ours["a"], theirs["a"] = base["a"] + 1, base["a"] - 1
    elif name == "shape":
        ours["a"], theirs["a"] = base["a"] + 1, base["a"].reshape(6, 8)
    elif name == "dtype":
        ours["a"], theirs["a"] = base["a"] + 1, base["a"].astype(np.float16)
    elif name == "del":
        del ours["a"]
        theirs["a"] = base["a"] + 1
    else:
        ours["x"], theirs["x"] = np.ones(2, np.float32), np.zeros(2, np.float32)
    theirs["b"] = base["b"] + 5  # a clean change alongside: still nothing is written
    key = "x" if name == "add" else "a"
    result, out = _merge(tmp_path, base, ours, theirs)
    assert not result.written and out is None
    assert [(c.name, c.conflict) for c in result.conflicts] == [(key, reason)]
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".model-diff")]


@pytest.mark.parametrize("side", ["ours", "theirs"])
def test_ours_and_theirs_pick_that_side_for_conflicts_only(tmp_path: Path, side: str) -> None:
    base = _base()
    ours = dict(base, a=base["a"] + 1, c=base["c"] * 2)
    theirs = dict(base, a=base["a"] - 1, b=base["b"] + 3)
    ours["d"] = base["d"].reshape(5, 1)  # a shape conflict: resolved by a pick too
    theirs["d"] = base["d"] + 1
    result, out = _merge(tmp_path, base, ours, theirs, side)
    pick = ours if side == "ours" else theirs
    assert result.written and out is not None
    assert _same(out["a"], pick["a"]) and _same(out["d"], pick["d"])
    assert _same(out["b"], theirs["b"]) and _same(out["c"], ours["c"])
    assert {t.name for t in result.tensors if t.resolved_by == side} == {"a", "d"}


def test_a_pick_can_remove(tmp_path: Path) -> None:
    base = _base()
    ours = dict(base)
    del ours["a"]
    theirs = dict(base, a=base["a"] + 1)
    result, out = _merge(tmp_path, base, ours, theirs, "ours")
    assert out is not None and "a" not in out and _outcome(result, "a") == "removed"
    (tmp_path / "t").mkdir()
    result, out = _merge(tmp_path / "t", base, ours, theirs, "theirs")
    assert out is not None and _same(out["a"], theirs["a"]) and _outcome(result, "a") == "theirs"


# -- arithmetic against float64 references ------------------------------------------------------


def _conflicting(dtype: type, seed: int = 1, n: int = 3001) -> tuple[dict[str, np.ndarray], ...]:
    r = _rng(seed)
    b = r.standard_normal(n).astype(dtype)
    o = (b.astype(np.float64) + r.standard_normal(n) * 0.1).astype(dtype)
    t = (b.astype(np.float64) + r.standard_normal(n) * 0.05).astype(dtype)
    return {"w": b}, {"w": o}, {"w": t}


def _ref_ties(b: np.ndarray, o: np.ndarray, t: np.ndarray, k: float) -> np.ndarray:
    """TIES written out on whole float64 arrays, independently of the streaming code."""
    m = math.ceil(k * b.size / 100)

    def trim(d: np.ndarray) -> np.ndarray:
        thr = np.sort(np.abs(d))[::-1][m - 1]
        return np.where(np.abs(d) >= thr, d, 0.0)

    to, tt = trim(o - b), trim(t - b)
    gamma = np.sign(to + tt)
    out = np.zeros_like(b)
    for i in range(b.size):
        agree = [d[i] for d in (to, tt) if d[i] != 0 and np.sign(d[i]) == gamma[i]]
        out[i] = sum(agree) / len(agree) if agree else 0.0
    return b + out


REFS = {
    "average": lambda b, o, t: (o + t) / 2,
    "task-arithmetic": lambda b, o, t: b + (o - b) + (t - b),
    "ties": lambda b, o, t: _ref_ties(b, o, t, 20.0),
}


@pytest.mark.parametrize("strategy", ["average", "task-arithmetic", "ties"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16, np.float64])
def test_arithmetic_matches_the_float64_reference_rounded_once(
    tmp_path: Path, strategy: str, dtype: type
) -> None:
    """Computed in float64, then rounded once to the tensor's dtype: bit-identical to numpy."""
    base, ours, theirs = _conflicting(dtype)
    result, out = _merge(tmp_path, base, ours, theirs, strategy)
    assert result.written and out is not None
    b, o, t = (x["w"].astype(np.float64) for x in (base, ours, theirs))
    expected = REFS[strategy](b, o, t).astype(dtype)
    assert out["w"].dtype == np.dtype(dtype)
    assert out["w"].tobytes() == expected.tobytes()
    assert _outcome(result, "w") == "merged"


def test_bfloat16_rounding_is_single_from_float64(tmp_path: Path) -> None:
    """base + Δours + Δtheirs = 1 + 2^-8 + 2^-40 lies just above the midpoint of two bfloat16
    values: rounded from float64 once it goes up to 1 + 2^-7; through float32 first (double
    rounding) it would tie to even, down to 1."""
    bf16 = ml_dtypes.bfloat16
    base = {"w": np.array([-(2.0**-40)], bf16)}
    ours = {"w": np.array([1.0], bf16)}
    theirs = {"w": np.array([2.0**-8], bf16)}
    _, out = _merge(tmp_path, base, ours, theirs, "task-arithmetic")
    assert out is not None
    assert float(out["w"][0]) == 1 + 2**-7
    exact = np.array([1 + 2**-8 + 2**-40])
    assert float(exact.astype(np.float32).astype(bf16)[0]) == 1.0  # what double rounding gives


def test_ties_trims_elects_and_averages_the_agreeing_updates(tmp_path: Path) -> None:
    """A hand-checked case: k = 50% of 4 elements keeps the 2 largest |Δ| per side."""
    base = {"w": np.zeros(4, np.float32)}
    ours = {"w": np.array([4, -3, 0.5, 1], np.float32)}
    theirs = {"w": np.array([2, 1, -5, -0.25], np.float32)}
    # Δo kept: 4, -3 ; Δt kept: 2, -5. sums 6, -3, -5, 0 -> signs +, -, -, 0
    # element 0: both agree (+): mean(4, 2) = 3; 1: ours -3 agrees; 2: theirs -5; 3: nothing
    _, out = _merge(tmp_path, base, ours, theirs, "ties", ties_k=50.0)
    assert out is not None
    assert out["w"].tolist() == [3.0, -3.0, -5.0, 0.0]


def test_ties_keep_count() -> None:
    assert ties_keep_count(10, 20.0) == 2
    assert ties_keep_count(3, 20.0) == 1
    assert ties_keep_count(5, 100.0) == 5
    assert ties_keep_count(0, 20.0) == 0


def test_ties_streams_large_tensors_in_chunks(tmp_path: Path) -> None:
    """A tensor spanning many chunks: the radix-selected threshold equals np.sort's."""
    base, ours, theirs = _conflicting(np.float32, seed=5, n=(1 << 18) * 3 + 17)
    b, o, t = (x["w"].astype(np.float64) for x in (base, ours, theirs))
    m = math.ceil(20 * b.size / 100)

    def trim(d: np.ndarray) -> np.ndarray:
        thr = np.sort(np.abs(d))[::-1][m - 1]
        return np.where(np.abs(d) >= thr, d, 0.0)

    to, tt = trim(o - b), trim(t - b)
    gamma = np.sign(to + tt)
    ao = (to != 0) & (np.sign(to) == gamma)
    at = (tt != 0) & (np.sign(tt) == gamma)
    cnt = ao.astype(float) + at
    delta = np.divide(
        np.where(ao, to, 0) + np.where(at, tt, 0), cnt, out=np.zeros_like(b), where=cnt > 0
    )
    _, out = _merge(tmp_path, base, ours, theirs, "ties")
    assert out is not None
    assert out["w"].tobytes() == (b + delta).astype(np.float32).tobytes()


@pytest.mark.parametrize("strategy", ["average", "task-arithmetic", "ties"])
def test_arithmetic_never_merges_structural_integer_or_nonfinite_conflicts(
    tmp_path: Path, strategy: str
) -> None:
    base = _base()
    ours = dict(base, a=base["a"] + 1, steps=base["steps"] + 1, c=base["c"] + 1)
    theirs = dict(base, a=base["a"].reshape(6, 8), steps=base["steps"] + 2)
    c = base["c"].copy()
    c[0, 0] = np.inf
    theirs["c"] = c
    result, out = _merge(tmp_path, base, ours, theirs, strategy)
    assert not result.written and out is None
    notes = {t.name: t.note for t in result.conflicts}
    assert set(notes) == {"a", "c", "steps"}
    assert "ours or theirs" in str(notes["a"])
    assert "int64" in str(notes["steps"]) and "NaN/Inf" in str(notes["c"])


# -- output, bad input -----------------------------------------------------------------------


def test_output_keeps_ours_metadata_and_order_and_loads_with_safetensors(tmp_path: Path) -> None:
    base = _base()
    ours = dict(base, a=base["a"] + 1)
    theirs = dict(base, zz_new=np.ones(2, np.float32))
    b = _write(tmp_path, "base", base, {"format": "pt", "who": "base"})
    o = _write(tmp_path, "ours", ours, {"format": "pt", "who": "ours"})
    t = _write(tmp_path, "theirs", theirs, {"format": "pt", "who": "theirs"})
    out = tmp_path / "out.safetensors"
    merge_checkpoints(b, o, t, out)
    from safetensors import safe_open

    with safe_open(str(out), "np") as f:
        assert f.metadata() == {"format": "pt", "who": "ours"}
        assert sorted(f.keys()) == ["a", "b", "c", "d", "steps", "zz_new"]


def test_merging_onto_ours_replaces_it_atomically(tmp_path: Path) -> None:
    """What a merge driver does: OUT is OURS (mapped while it is being replaced)."""
    base = _base()
    ours = dict(base, a=base["a"] + 1)
    theirs = dict(base, b=base["b"] + 1)
    b, o, t, _ = _triple(tmp_path, base, ours, theirs)
    os.chmod(o, 0o640)
    result = merge_checkpoints(b, o, t, o)
    assert result.written
    got = stn.load_file(o)
    assert _same(got["a"], ours["a"]) and _same(got["b"], theirs["b"])
    assert os.stat(o).st_mode & 0o777 == 0o640


def test_unknown_strategy_and_bad_k_are_usage_errors(tmp_path: Path) -> None:
    paths = _triple(tmp_path, _base(), _base(), _base())
    with pytest.raises(ModelDiffError, match="unknown merge strategy"):
        merge_checkpoints(*paths, strategy="median")
    with pytest.raises(ModelDiffError, match="TIES k"):
        merge_checkpoints(*paths, strategy="ties", ties_k=0)
    assert not os.path.exists(paths[3])


def test_unreadable_input_raises_and_writes_nothing(tmp_path: Path) -> None:
    b, o, _, out = _triple(tmp_path, _base(), _base(), _base())
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(CheckpointError):
        merge_checkpoints(b, o, bad, out)
    with pytest.raises(CheckpointError, match="no such file"):
        merge_checkpoints(b, o, tmp_path / "missing.safetensors", out)
    assert not os.path.exists(out)


def test_missing_output_directory_is_a_usage_error(tmp_path: Path) -> None:
    base = _base()
    b, o, t, _ = _triple(tmp_path, base, dict(base, a=base["a"] + 1), base)
    with pytest.raises(ModelDiffError, match="output directory does not exist"):
        merge_checkpoints(b, o, t, tmp_path / "nope" / "out.safetensors")


def test_a_result_the_format_cannot_hold_is_refused_before_writing(tmp_path: Path) -> None:
    """OURS is .npz; THEIRS adds a bfloat16 tensor, which .npy cannot describe."""
    base = {"w": np.zeros(3, np.float32)}
    np.savez(tmp_path / "base.npz", **base)
    np.savez(tmp_path / "ours.npz", **base)
    theirs = dict(base, h=np.ones(2, ml_dtypes.bfloat16))
    save_safetensors(tmp_path / "theirs.safetensors", theirs)
    with pytest.raises(UnwritableCheckpointError, match="bfloat16"):
        merge_checkpoints(
            tmp_path / "base.npz",
            tmp_path / "ours.npz",
            tmp_path / "theirs.safetensors",
            tmp_path / "out.npz",
        )
    assert not os.path.exists(tmp_path / "out.npz")


def test_a_result_beyond_the_dtype_range_becomes_inf(tmp_path: Path) -> None:
    base = {"w": np.zeros(2, np.float16)}
    ours = {"w": np.array([60000, 1], np.float16)}
    theirs = {"w": np.array([60000, 2], np.float16)}
    _, out = _merge(tmp_path, base, ours, theirs, "task-arithmetic")
    assert out is not None and np.isposinf(out["w"][0]) and out["w"][1] == 3


def test_lfs_pointers_are_read_from_the_store_and_the_output_is_the_checkpoint(
    tmp_path: Path, clean_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a driver under Git LFS is given: three pointers. The merge reads the objects from
    the repository's store and writes a real checkpoint, in the object's format."""
    import shutil
    import subprocess

    if shutil.which("git-lfs") is None:
        pytest.skip("git-lfs is not installed")
    for var in ("GIT_DIR", "GIT_COMMON_DIR", "GIT_WORK_TREE"):
        monkeypatch.delenv(var, raising=False)
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args: str, stdin: bytes | None = None) -> bytes:
        return subprocess.run(
            ["git", *args], cwd=repo, env=clean_env, input=stdin, capture_output=True, check=True
        ).stdout

    git("init", "-q")
    git("lfs", "install", "--local")
    base = _base()
    states = {
        "base": base,
        "ours": dict(base, a=base["a"] + 1),
        "theirs": dict(base, b=base["b"] * 2),
    }
    pointers = []
    for name, state in states.items():
        raw = tmp_path / f"{name}.raw.safetensors"
        save_safetensors(raw, state, {"who": name})
        pointer = repo / f"{name}.safetensors"
        pointer.write_bytes(git("lfs", "clean", "--", pointer.name, stdin=raw.read_bytes()))
        assert pointer.read_bytes().startswith(b"version https://git-lfs")
        raw.unlink()
        pointers.append(str(pointer))
    monkeypatch.chdir(repo)
    out = repo / "merged.safetensors"
    assert merge_checkpoints(*pointers, out).written
    got = stn.load_file(str(out))
    assert _same(got["a"], states["ours"]["a"]) and _same(got["b"], states["theirs"]["b"])
    from safetensors import safe_open

    with safe_open(str(out), "np") as f:
        assert f.metadata() == {"who": "ours"}


def test_without_a_base_every_tensor_is_added_and_differences_conflict(tmp_path: Path) -> None:
    """git's add/add case: no common ancestor. Identical tensors merge, different ones
    are add-add conflicts, one-sided ones are taken."""
    base = _base()
    ours = dict(base, a=base["a"] + 1, only_ours=np.ones(2, np.float32))
    theirs = dict(base, a=base["a"] - 1)
    o, t = _write(tmp_path, "ours", ours), _write(tmp_path, "theirs", theirs)
    out = tmp_path / "out.safetensors"
    result = merge_checkpoints(None, o, t, out)
    assert [(c.name, c.conflict) for c in result.conflicts] == [("a", "add-add")]
    assert result.base is None and not out.exists()
    result = merge_checkpoints(None, o, t, out, strategy="theirs")
    got = stn.load_file(str(out))
    assert _same(got["a"], theirs["a"]) and _same(got["only_ours"], ours["only_ours"])
    assert _outcome(result, "b") == "both"
