"""The PyTorch writer: torch.save-compatible archives written without torch, read back by
torch.load(weights_only=True); only (nested) dicts of tensors are written."""

from __future__ import annotations

import collections
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from model_diff import merge_checkpoints
from model_diff.errors import CheckpointError, ModelDiffError, UnwritableCheckpointError
from tests.model_diff.formats.factories import save_training_pt, to_torch

from .conftest import member_data_offset

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def _bits(t: object) -> bytes:
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()  # type: ignore[attr-defined]


def _module_state() -> collections.OrderedDict:
    """A real nn.Module state_dict (an OrderedDict with _metadata) plus every dtype."""
    torch.manual_seed(0)
    sd = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3)).state_dict()
    extra = to_torch(
        {
            "f8": np.linspace(-1, 1, 5).astype(ml_dtypes.float8_e4m3fn),
            "f8b": np.linspace(-1, 1, 5).astype(ml_dtypes.float8_e5m2),
            "bf16": np.linspace(-1, 1, 5).astype(ml_dtypes.bfloat16),
            "u16": np.arange(3, dtype=np.uint16),
            "u32": np.arange(3, dtype=np.uint32),
            "i8": np.arange(3, dtype=np.int8),
            "mask": np.array([True, False]),
            "scalar": np.array(1.5, np.float64),
            "empty": np.zeros((0, 3), np.float16),
        }
    )
    sd.update(extra)
    return sd


def _copy(sd: collections.OrderedDict) -> collections.OrderedDict:
    out = collections.OrderedDict((k, v.clone()) for k, v in sd.items())
    out._metadata = sd._metadata  # type: ignore[attr-defined]
    return out


def test_merged_pt_reads_back_with_torch_weights_only(tmp_path: Path) -> None:
    base = _module_state()
    ours, theirs = _copy(base), _copy(base)
    ours["0.weight"] += 1
    theirs["1.bias"] -= 1
    theirs["bf16"] = theirs["bf16"] * 2
    del theirs["u32"]
    for name, sd in (("base", base), ("ours", ours), ("theirs", theirs)):
        torch.save(sd, tmp_path / f"{name}.pt")
    out = tmp_path / "out.pt"
    result = merge_checkpoints(
        tmp_path / "base.pt", tmp_path / "ours.pt", tmp_path / "theirs.pt", out
    )
    assert result.written and result.format == "pytorch"
    for mmap in (False, True):
        got = torch.load(out, weights_only=True, mmap=mmap)
        assert isinstance(got, collections.OrderedDict)
        assert got._metadata == base._metadata  # state_dict's version records kept
        assert list(got) == [k for k in base if k != "u32"]  # OURS' order, the removal applied
        for k, v in got.items():
            want = ours[k] if k == "0.weight" else theirs[k]
            assert v.dtype == want.dtype and v.shape == want.shape, k
            assert _bits(v) == _bits(want), k
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    module.load_state_dict({k: v for k, v in got.items() if k[0] in "01"})
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        assert names[0] == "archive/data.pkl"
        assert zf.read("archive/byteorder") == b"little"
        data = [n for n in names if n.startswith("archive/data/")]
    assert data and all(member_data_offset(out, n) % 64 == 0 for n in data)


def test_output_is_deterministic(tmp_path: Path) -> None:
    base = _module_state()
    ours = _copy(base)
    ours["0.bias"] += 1
    torch.save(base, tmp_path / "base.pt")
    torch.save(ours, tmp_path / "ours.pt")
    args = (tmp_path / "base.pt", tmp_path / "ours.pt", tmp_path / "base.pt")
    merge_checkpoints(*args, tmp_path / "one.pt")
    merge_checkpoints(*args, tmp_path / "two.pt")
    assert (tmp_path / "one.pt").read_bytes() == (tmp_path / "two.pt").read_bytes()


def test_nested_dicts_int_keys_and_requires_grad_are_kept(tmp_path: Path) -> None:
    w = torch.zeros(2, requires_grad=True)
    base = {
        "enc": {"w": w.detach().clone().requires_grad_(True)},
        "dec": {"w": torch.ones(2), 3: torch.ones(1)},
    }
    theirs = {
        "enc": {"w": base["enc"]["w"].detach().clone().requires_grad_(True)},
        "dec": {"w": torch.ones(2) * 2, 3: torch.ones(1), "new": torch.ones(4)},
    }
    torch.save(base, tmp_path / "base.pt")
    torch.save(theirs, tmp_path / "theirs.pt")
    out = tmp_path / "out.pt"
    merge_checkpoints(tmp_path / "base.pt", tmp_path / "base.pt", tmp_path / "theirs.pt", out)
    got = torch.load(out, weights_only=True)
    assert type(got) is dict and list(got) == ["enc", "dec"]
    assert list(got["dec"]) == ["w", 3, "new"]
    assert got["enc"]["w"].requires_grad and not got["dec"]["w"].requires_grad
    assert torch.equal(got["dec"]["w"], torch.ones(2) * 2) and torch.equal(
        got["dec"]["new"], torch.ones(4)
    )


def test_a_wrapped_state_dict_keeps_its_wrapper(tmp_path: Path) -> None:
    """{"state_dict": {...}} alone: the reader strips the wrapper; the writer puts it back."""
    base = {"state_dict": {"w": torch.zeros(3), "v": torch.ones(2)}}
    theirs = {"state_dict": {"w": torch.ones(3), "v": torch.ones(2)}}
    torch.save(base, tmp_path / "base.pt")
    torch.save(theirs, tmp_path / "theirs.pt")
    out = tmp_path / "out.pt"
    merge_checkpoints(tmp_path / "base.pt", tmp_path / "base.pt", tmp_path / "theirs.pt", out)
    got = torch.load(out, weights_only=True)
    assert list(got) == ["state_dict"] and torch.equal(got["state_dict"]["w"], torch.ones(3))


def test_legacy_format_is_merged_into_a_zip_archive(tmp_path: Path) -> None:
    torch.save({"w": torch.zeros(3)}, tmp_path / "base.pt", _use_new_zipfile_serialization=False)
    torch.save({"w": torch.ones(3)}, tmp_path / "theirs.pt", _use_new_zipfile_serialization=False)
    out = tmp_path / "out.pt"
    merge_checkpoints(tmp_path / "base.pt", tmp_path / "base.pt", tmp_path / "theirs.pt", out)
    assert zipfile.is_zipfile(out)
    assert torch.equal(torch.load(out, weights_only=True)["w"], torch.ones(3))


def test_training_checkpoint_with_optimizer_state_is_refused_and_nothing_written(
    tmp_path: Path,
) -> None:
    """Acceptance 3: exit 2 (UnwritableCheckpointError), nothing written."""
    state = {"w": np.zeros(3, np.float32)}
    for name in ("base", "ours", "theirs"):
        save_training_pt(tmp_path / f"{name}.ckpt", {"w": state["w"] + (name == "theirs")})
    with pytest.raises(UnwritableCheckpointError, match="optimizer_state_dict") as e:
        merge_checkpoints(
            *(tmp_path / f"{n}.ckpt" for n in ("base", "ours", "theirs")), tmp_path / "out.ckpt"
        )
    assert e.value.exit_code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.ckpt", "ours.ckpt", "theirs.ckpt"]


@pytest.mark.parametrize(
    ("obj", "what"),
    [
        ({"w": torch.zeros(2), "steps": [1, 2]}, "steps"),
        ({"w": torch.zeros(2), "epoch": 3}, "epoch"),
        ({"w": torch.nn.Parameter(torch.zeros(2))}, "Parameter|_rebuild_parameter|w"),
    ],
)
def test_pickles_with_more_than_tensors_are_refused(tmp_path: Path, obj: object, what: str) -> None:
    torch.save(obj, tmp_path / "x.pt")
    with pytest.raises((UnwritableCheckpointError, CheckpointError), match=what):
        merge_checkpoints(*(tmp_path / "x.pt" for _ in range(3)), tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()


def test_the_structure_comes_from_the_reader_and_runs_no_code(tmp_path: Path) -> None:
    """A pickle that would call os.system is refused, never executed: the writer reads the
    file's structure only through the reader (which records the call, runs nothing)."""
    import pickle

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            import os

            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"w": Evil()}, protocol=2))
    with pytest.raises(ModelDiffError, match="system"):
        merge_checkpoints(path, path, path, tmp_path / "out.pt")
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "out.pt").exists()
