"""The PyTorch reader: our own unpickler against torch.load, on every dtype, view and container."""

from __future__ import annotations

import argparse
import mmap
import os
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from model_diff.diff import ModelDiff
from model_diff.errors import CheckpointError, MissingDependencyError
from model_diff.formats import open_checkpoint
from tests.model_diff.formats.factories import save_big_endian_pt, save_pt, save_training_pt

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

STATE = {
    "embed.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
    "layers.0.w": (np.linspace(-2, 2, 8)).astype(ml_dtypes.bfloat16),
    "layers.1.w": np.linspace(-2, 2, 8).astype(np.float16),
    "f8a": np.linspace(-2, 2, 8).astype(ml_dtypes.float8_e4m3fn),
    "f8b": np.linspace(-2, 2, 8).astype(ml_dtypes.float8_e5m2),
    "ids": np.arange(5, dtype=np.int64),
    "mask": np.array([True, False, True]),
}

#: Every dtype model-diff reads, as torch tensors with awkward values.
TORCH_DTYPES = [
    "float64",
    "float32",
    "float16",
    "bfloat16",
    "float8_e4m3fn",
    "float8_e5m2",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "bool",
]


def every_dtype() -> dict[str, Any]:
    out = {}
    base = torch.linspace(-3, 3, 24).reshape(4, 6)
    for name in TORCH_DTYPES:
        dt = getattr(torch, name)
        if dt.is_floating_point:
            out[name] = base.to(dt)
        elif dt == torch.bool:
            out[name] = base > 0
        else:
            out[name] = (base * 10).abs().to(torch.int64).to(dt)
    return out


def torch_bytes(t: Any) -> bytes:
    """A tensor's elements in C order, as raw bytes (through an integer view: numpy has no
    bfloat16/float8)."""
    flat = t.detach().contiguous().reshape(-1)
    carrier = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[flat.element_size()]
    return flat.view(carrier).numpy().tobytes()


def assert_like_torch_load(path: Path, names: list[str] | None = None) -> None:
    """Every tensor we read equals what torch.load gives: dtype, shape and bytes."""
    want = torch.load(path, weights_only=True)
    with open_checkpoint(path) as ckpt:
        assert set(ckpt.tensors) == set(names or want)
        for name, ref in ckpt.tensors.items():
            t = want[name]
            assert ref.dtype.name == str(t.dtype).removeprefix("torch."), name
            assert ref.shape == tuple(t.shape), name
            assert ref.array().tobytes() == torch_bytes(t), name


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_every_dtype_reads_like_torch_load(tmp_path: Path, legacy: bool) -> None:
    """bf16, f16, float8 (both), every int and uint width and bool: bytes equal torch.load's
    (zip and legacy files; torch cannot load float8/uint16+ back from legacy files)."""
    state = every_dtype()
    if legacy:
        state = {
            k: v
            for k, v in state.items()
            if not k.startswith(("float8", "uint16", "uint32", "uint64"))
        }
    path = tmp_path / "m.pt"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    assert_like_torch_load(path)


def test_legacy_file_holds_float8_and_wide_uints_too(tmp_path: Path) -> None:
    """Where torch itself cannot load a legacy file back (float8, uint16-64), we still read the
    bytes torch.save wrote."""
    state = {k: v for k, v in every_dtype().items() if k.startswith(("float8", "uint"))}
    torch.save(state, tmp_path / "m.pth", _use_new_zipfile_serialization=False)
    with open_checkpoint(tmp_path / "m.pth") as ckpt:
        for name, t in state.items():
            assert ckpt[name].array().tobytes() == torch_bytes(t), name


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_views_strides_offsets_and_shared_storages(tmp_path: Path, legacy: bool) -> None:
    """Transposed, sliced (offset + strides), expanded (stride 0), a view sharing a storage
    with its base, a parameter and a scalar: the elements torch.load gives, in C order."""
    base = torch.arange(60, dtype=torch.float32).reshape(6, 10)
    state = {
        "base": base,
        "t": base.t(),
        "slice": base[2:5, 1::3],
        "tail": base.reshape(-1)[17:],
        "expanded": torch.arange(3.0).reshape(3, 1).expand(3, 4),
        "param": torch.nn.Parameter(torch.ones(2, 2)),
        "scalar": torch.tensor(7.5),
        "empty": torch.zeros(0, 3),
        "bf16_t": base.to(torch.bfloat16).t(),
    }
    path = tmp_path / "views.pt"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    assert_like_torch_load(path)
    with open_checkpoint(path) as ckpt:
        # views of one storage read from one mapping, each only its own span
        assert ckpt["slice"].array().tolist() == base[2:5, 1::3].reshape(-1).tolist()
        assert np.shares_memory(ckpt["tail"].array(), ckpt["base"].array()) or legacy


def test_contiguous_tensors_are_zero_copy_views_of_the_file(tmp_path: Path) -> None:
    """A contiguous tensor is handed out without a copy: a read-only view of the file's mapping."""
    with open_checkpoint(save_pt(tmp_path / "m.pt", STATE)) as ckpt:
        a = ckpt["embed.weight"].array()
        assert isinstance(a.base, (np.ndarray, memoryview))
        assert not a.flags.owndata and not a.flags.writeable
        b = ckpt["embed.weight"].array()
        assert np.shares_memory(a, b)


def test_state_dict_round_trips_bit_exact(tmp_path: Path) -> None:
    """The fixture state (numpy arrays saved through torch) comes back bit-exact."""
    with open_checkpoint(save_pt(tmp_path / "m.pt", STATE)) as ckpt:
        assert ckpt.format == "pytorch" and ckpt.skipped == []
        for name, want in STATE.items():
            got = ckpt[name].array()
            assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), name


def test_big_endian_archive_reads_like_its_little_endian_twin(tmp_path: Path) -> None:
    """A zip checkpoint whose byteorder record says big (storages byte-swapped) gives the same
    values as its little-endian twin: diffs unchanged, statistics equal, file never written."""
    state = every_dtype()
    state["strided"] = torch.linspace(-1, 1, 40).reshape(5, 8).t()
    le = tmp_path / "le.pt"
    torch.save(state, le)
    be = save_big_endian_pt(le, tmp_path / "be.pt")
    raw = be.read_bytes()
    assert zipfile.ZipFile(be).read("le/byteorder") == b"big"
    with open_checkpoint(le) as a, open_checkpoint(be) as b:
        for name in state:
            assert b[name].array().tobytes() == a[name].array().tobytes(), name
        assert b.tensor_info == a.tensor_info
        diffs, summary = ModelDiff().diff(a, b)
        assert summary.unchanged_parameters == len(state) and diffs == []
        for ref in b.tensors.values():  # release after reading: the values stay right
            ref.release()
        assert b["float32"].array().tobytes() == torch_bytes(state["float32"])
    assert be.read_bytes() == raw


def test_big_endian_health_sees_no_false_nan(tmp_path: Path) -> None:
    """The case that failed with torch's in-place swap: stats of a big-endian file after page
    release are the true ones (no NaN, no 1e38 values)."""
    le = tmp_path / "le.pt"
    torch.save({"w": torch.randn(300_000), "b": torch.randn(7)}, le)
    be = save_big_endian_pt(le, tmp_path / "be.pt")
    with open_checkpoint(be) as ckpt:
        for _ in range(2):
            info = ckpt.tensor_info  # computes, releasing pages per tensor
            assert all(i.nan_count == 0 and abs(i.max or 0) < 10 for i in info.values())
            ckpt._info = None
    with open_checkpoint(le) as a, open_checkpoint(be) as b:
        assert a.tensor_info == b.tensor_info


def test_training_checkpoint_weights_found_by_structure(tmp_path: Path) -> None:
    """{"model_state_dict", "optimizer_state_dict", "epoch"}: the weights only; the optimizer
    is set aside and listed with its tensor count."""
    with open_checkpoint(save_training_pt(tmp_path / "train.pt", STATE)) as ckpt:
        assert set(ckpt.tensors) == set(STATE)
        assert ckpt.skipped == ["epoch", "optimizer_state_dict"]
        assert ckpt.metadata == {"epoch": "3"}
        kinds = {s.path: (s.kind, s.tensors, s.compared) for s in ckpt.structure}
        assert kinds == {
            "model_state_dict": ("model", len(STATE), True),
            "optimizer_state_dict": ("optimizer", 2, False),
        }


@pytest.mark.parametrize("key", ["state_dict", "model", "module", "model_state", "weights", "G"])
def test_any_wrapper_key_is_unwrapped(tmp_path: Path, key: str) -> None:
    """Weights under any key (not a list of known names) are found and named as saved."""
    with open_checkpoint(save_pt(tmp_path / "m.pt", STATE, wrap=key)) as ckpt:
        assert set(ckpt.tensors) == set(STATE)
        assert [s.path for s in ckpt.structure] == [key]


def test_lightning_checkpoint_keeps_version_and_step_as_metadata(tmp_path: Path) -> None:
    """A Lightning .ckpt: state_dict found; epoch/global_step/version become metadata; the
    optimizer and scheduler entries are set aside; a callback's scalar scores are not weights."""
    opt = {
        "state": {
            0: {"exp_avg": torch.ones(3), "exp_avg_sq": torch.ones(3), "step": torch.tensor(3.0)}
        },
        "param_groups": [{"lr": 0.1, "params": [0]}],
    }
    extra = {
        "epoch": 2,
        "global_step": 500,
        "pytorch-lightning_version": "2.4.0",
        "optimizer_states": [opt],
        "lr_schedulers": [{"last_epoch": 3, "base_lrs": [0.1], "_last_lr": [0.1]}],
        "hyper_parameters": {"lr": 0.1},
        "callbacks": {
            "ModelCheckpoint{'monitor': 'val_loss'}": {
                "best_model_score": torch.tensor(0.25),
                "best_model_path": "x.ckpt",
                "best_k_models": {"x.ckpt": torch.tensor(0.25)},
            }
        },
    }
    path = save_pt(tmp_path / "last.ckpt", STATE, wrap="state_dict", extra=extra)
    with open_checkpoint(path) as ckpt:
        assert set(ckpt.tensors) == set(STATE)
        assert ckpt.metadata == {
            "epoch": "2",
            "global_step": "500",
            "pytorch-lightning_version": "2.4.0",
        }
        assert ckpt.skipped == sorted(extra)
        aside = {s.path: (s.kind, s.tensors, s.detail) for s in ckpt.structure if not s.compared}
        assert aside == {
            "optimizer_states.0": ("optimizer", 3, "Adam state"),
            "lr_schedulers.0": ("scheduler", 0, "learning-rate scheduler"),
            "callbacks.ModelCheckpoint{'monitor': 'val_loss'}": ("scalars", 2, "scalar tensors"),
        }


def test_nested_dicts_of_tensors_are_flattened_with_dots(tmp_path: Path) -> None:
    """{"encoder": {"w": t}} reads as "encoder.w"; non-tensor leaves are skipped by name."""
    obj = {"encoder": {"w": torch.ones(2), "cfg": "x"}, "decoder": {"b": torch.zeros(3)}}
    torch.save(obj, tmp_path / "m.pt")
    with open_checkpoint(tmp_path / "m.pt") as ckpt:
        assert ckpt.layer_names == ["decoder.b", "encoder.w"]
        assert ckpt.skipped == ["encoder.cfg"]


def test_several_models_keep_their_prefixes_and_select_narrows(tmp_path: Path) -> None:
    """generator + discriminator + optimizer: both models kept under their paths; the
    optimizer set aside; select= picks one model, named as its own state dict."""
    g = {"conv.weight": torch.ones(2, 2), "conv.bias": torch.zeros(2)}
    d = {"fc.weight": torch.full((3,), 2.0)}
    opt = {"state": {}, "param_groups": [{"params": [0, 1]}]}
    torch.save({"generator": g, "discriminator": d, "opt_g": opt, "epoch": 1}, tmp_path / "gan.pt")
    with open_checkpoint(tmp_path / "gan.pt") as ckpt:
        assert ckpt.layer_names == [
            "discriminator.fc.weight",
            "generator.conv.bias",
            "generator.conv.weight",
        ]
        assert [(s.path, s.kind) for s in ckpt.structure if s.compared] == [
            ("discriminator", "model"),
            ("generator", "model"),
        ]
        assert "generator" in (ckpt.choice or "") and "opt_g" in (ckpt.choice or "")
    with open_checkpoint(tmp_path / "gan.pt", select="generator") as ckpt:
        assert ckpt.layer_names == ["conv.bias", "conv.weight"]
        assert [s.path for s in ckpt.structure if s.compared] == ["generator"]
    with pytest.raises(CheckpointError, match=r"no tensors under 'critic'.*generator"):
        open_checkpoint(tmp_path / "gan.pt", select="critic")


def test_ema_copy_is_kept_and_labelled(tmp_path: Path) -> None:
    """model + model_ema of the same architecture: both compared (prefixed), the copy named as
    an EMA of the model."""
    sd = {"w": torch.ones(2, 3), "b": torch.zeros(2)}
    ema = {k: v + 0.5 for k, v in sd.items()}
    torch.save({"model": sd, "model_ema": ema, "step": torch.tensor(10)}, tmp_path / "m.pt")
    with open_checkpoint(tmp_path / "m.pt") as ckpt:
        assert ckpt.layer_names == ["model.b", "model.w", "model_ema.b", "model_ema.w"]
        by_path = {s.path: s for s in ckpt.structure}
        assert by_path["model_ema"].kind == "ema" and "copy of model" in by_path["model_ema"].detail
        assert by_path["step"].kind == "tensor" and not by_path["step"].compared


@pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")
def test_pickled_module_and_torchscript_read_as_their_state_dicts(tmp_path: Path) -> None:
    """torch.save(model) (a pickled nn.Module, class not run) and torch.jit.save(script) read
    as model.state_dict() would name them, torch-free."""
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.BatchNorm1d(3))
    want = m.state_dict()
    torch.save(m, tmp_path / "module.pt")
    torch.jit.save(torch.jit.script(m), tmp_path / "script.pt")
    for name in ("module.pt", "script.pt"):
        with open_checkpoint(tmp_path / name) as ckpt:
            assert set(ckpt.tensors) == set(want), name
            for k in ckpt.tensors:
                assert ckpt[k].array().tobytes() == torch_bytes(want[k]), (name, k)


class _Touch:
    """Pickles to a call of os.system that would create a file on load."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.target}",))


def test_pickle_that_would_run_a_command_runs_nothing(tmp_path: Path) -> None:
    """A crafted pickle calling os.system on load: the call is recorded, never made; the
    tensors beside it are read; the marker file never appears (zip and legacy)."""
    target = tmp_path / "pwned"
    for legacy in (False, True):
        path = tmp_path / f"evil{int(legacy)}.pt"
        torch.save(
            {"w": torch.ones(2), "x": _Touch(target)},
            path,
            _use_new_zipfile_serialization=not legacy,
        )
        with open_checkpoint(path) as ckpt:
            assert ckpt.layer_names == ["w"] and ckpt.skipped == ["x"]
        assert not target.exists()
    # the same through numpy's and builtins' allowed names does nothing either
    evil = pickle.dumps({"w": _Touch(target)}, protocol=2)
    (tmp_path / "plain.pkl").write_bytes(evil)
    with pytest.raises(CheckpointError, match=r"not a torch\.save checkpoint"):
        open_checkpoint(tmp_path / "plain.pkl", format="pytorch")
    assert not target.exists()


def _stand_in_module(name: str, source: str) -> Any:
    import types

    mod = types.ModuleType(name)
    exec(source, mod.__dict__)
    sys.modules[name] = mod
    return mod


def test_lightning_omegaconf_hparams_read_without_the_package(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """hyper_parameters an omegaconf.DictConfig (a stand-in module, removed before reading so
    the class cannot even be imported) and a config holding numpy arrays: read without
    --unsafe-pickle; torch.load(weights_only=True) refuses the same file."""
    mod = _stand_in_module(
        "omegaconf",
        "class DictConfig:\n"
        "    def __init__(self, content):\n"
        "        self._content = dict(content)\n"
        "        self._metadata = {'flags': None}\n",
    )
    extra = {
        "hyper_parameters": mod.DictConfig({"lr": 0.1, "layers": [1, 2]}),
        "config": {"mean": np.array([0.485, 0.456, 0.406]), "ids": np.arange(3)},
        "args": argparse.Namespace(lr=0.1),
        "epoch": 4,
    }
    path = save_pt(tmp_path / "last.ckpt", STATE, wrap="state_dict", extra=extra)
    legacy = save_pt(tmp_path / "legacy.ckpt", STATE, wrap="state_dict", extra=extra, legacy=True)
    monkeypatch.delitem(sys.modules, "omegaconf")
    monkeypatch.setitem(sys.modules, "omegaconf", None)  # import omegaconf now fails
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    for p in (path, legacy):
        with open_checkpoint(p) as ckpt:
            assert set(ckpt.tensors) == set(STATE)
            assert ckpt.skipped == ["args", "config", "epoch", "hyper_parameters"]


def test_unsafe_pickle_uses_torch_load_and_finds_the_same_weights(tmp_path: Path) -> None:
    """--unsafe-pickle (torch.load running the file's classes) finds the same structure."""
    path = save_training_pt(tmp_path / "train.pt", STATE)
    with open_checkpoint(path) as safe, open_checkpoint(path, unsafe_pickle=True) as unsafe:
        assert set(unsafe.tensors) == set(safe.tensors)
        assert [s.to_dict() for s in unsafe.structure] == [s.to_dict() for s in safe.structure]
        for n in safe.tensors:
            assert unsafe[n].array().tobytes() == safe[n].array().tobytes()


def test_unreadable_tensors_are_listed_not_guessed(tmp_path: Path) -> None:
    """Complex, sparse and meta tensors are named in ``unchecked`` with the reason; the
    readable ones still load."""
    torch.save(
        {
            "c": torch.zeros(2, dtype=torch.complex64),
            "sparse": torch.eye(3).to_sparse(),
            "w": torch.ones(2),
        },
        tmp_path / "m.pt",
    )
    with open_checkpoint(tmp_path / "m.pt") as ckpt:
        assert ckpt.layer_names == ["w"]
        assert set(ckpt.unchecked) == {"c", "sparse"}
        assert "complex64" in ckpt.unchecked["c"] and "sparse" in ckpt.unchecked["sparse"]


def test_file_without_any_tensor_is_an_error(tmp_path: Path) -> None:
    """A pickle of only scalars/strings is not a checkpoint: clear error listing what it holds."""
    torch.save({"epoch": 1, "note": "hi"}, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"holds no tensors .*epoch, note"):
        open_checkpoint(tmp_path / "m.pt")


def test_missing_storage_is_named_not_called_corrupt(tmp_path: Path) -> None:
    """A zip whose storage member is gone: the error names the tensor and the missing member,
    and says the archive is incomplete rather than corrupt."""
    path = tmp_path / "m.pt"
    torch.save({"a": torch.ones(3), "b": torch.zeros(2)}, path)
    cut = tmp_path / "cut.pt"
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(cut, "w") as zout:
        for info in zin.infolist():
            if not info.filename.endswith("data/1"):
                zout.writestr(info.filename, zin.read(info))
    with pytest.raises(CheckpointError) as info:
        open_checkpoint(cut)
    msg = str(info.value)
    assert "b: its storage data/1 is missing" in msg and "corrupt" not in msg


def test_truncated_zip_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    """A torch zip cut short raises CheckpointError with a re-save hint, not a traceback."""
    path = save_pt(tmp_path / "m.pt", STATE)
    path.write_bytes(path.read_bytes()[:400])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint") as info:
        open_checkpoint(path)
    assert "hint:" in str(info.value) and "\n" not in str(info.value)


def test_truncated_legacy_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    """A legacy file cut inside its raw storages says so."""
    path = save_pt(tmp_path / "m.pth", {"w": np.ones(1000, np.float32)}, legacy=True)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"storage .* \(truncated\?\)"):
        open_checkpoint(path)


def _resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * mmap.PAGESIZE


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_release_drops_pages_and_data_stays_right(tmp_path: Path, legacy: bool) -> None:
    """release() gives a tensor's pages back (zip and legacy files are both mapped read-only);
    the data is re-read correctly afterwards, and the neighbouring tensor is intact."""
    n = 8 << 20
    path = tmp_path / "big.pt"
    torch.save(
        {"w": torch.full((n,), 2.0), "b": torch.ones(3)},
        path,
        _use_new_zipfile_serialization=not legacy,
    )
    with open_checkpoint(path) as ckpt:
        before = _resident_bytes()
        a = ckpt["w"].array()
        assert float(a.sum(dtype=np.float64)) == 2.0 * n
        touched = _resident_bytes()
        ckpt["w"].release()
        released = _resident_bytes()
        assert touched - before > 24 << 20 and touched - released > 24 << 20
        assert float(a[12345]) == 2.0 and ckpt["b"].array().tolist() == [1.0, 1.0, 1.0]


@pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")
def test_torch_is_not_imported_and_not_needed(tmp_path: Path) -> None:
    """Zip, legacy and TorchScript files read in a process where ``import torch`` fails, with
    the same bytes; only --unsafe-pickle asks for torch."""
    import subprocess

    save_training_pt(tmp_path / "train.pt", STATE)
    save_pt(tmp_path / "legacy.pth", STATE, legacy=True)
    torch.jit.save(torch.jit.script(torch.nn.Linear(3, 2)), tmp_path / "script.pt")
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import hashlib\n"
        "from model_diff.formats import open_checkpoint\n"
        "from model_diff.errors import MissingDependencyError\n"
        "for p in sys.argv[1:]:\n"
        "    with open_checkpoint(p) as c:\n"
        "        h = hashlib.sha256(b''.join(r.array().tobytes() for r in c.tensors.values()))\n"
        "        print(p, sorted(c.tensors), h.hexdigest())\n"
        "try:\n"
        "    open_checkpoint(sys.argv[1], unsafe_pickle=True)\n"
        "except MissingDependencyError as e:\n"
        "    print('unsafe:', 'torch' in str(e))\n"
    )
    paths = [str(tmp_path / n) for n in ("train.pt", "legacy.pth", "script.pt")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    out = subprocess.run(
        [sys.executable, "-c", code, *paths], capture_output=True, text=True, env=env, check=True
    ).stdout.splitlines()
    import hashlib

    expected = []
    for p in paths:
        with open_checkpoint(p) as c:
            h = hashlib.sha256(b"".join(r.array().tobytes() for r in c.tensors.values()))
            expected.append(f"{p} {sorted(c.tensors)} {h.hexdigest()}")
    assert out == [*expected, "unsafe: True"]
    assert MissingDependencyError  # the error type the child process printed


def test_tensors_inside_lists_are_read_and_checked(tmp_path: Path) -> None:
    """Tensors in lists (torch_ema's shadow_params, a list of heads) are read, named by index,
    and their NaN counted: never skipped while health says ok."""
    bad = torch.ones(4)
    bad[1] = float("nan")
    torch.save({"heads": [torch.zeros(2), bad]}, tmp_path / "m.pt")
    with open_checkpoint(tmp_path / "m.pt") as ckpt:
        assert ckpt.layer_names == ["heads.0", "heads.1"]
        assert ckpt.tensor_info["heads.1"].nan_count == 1


def test_mapped_tensors_know_their_offsets_and_the_pass_follows_them(tmp_path: Path) -> None:
    """Every tensor read from the mapped archive records the byte offset of its data; the
    pass reads in that order (the progress callback hears of each tensor as stored)."""
    names = [f"layers.{i}.w" for i in (3, 1, 10, 2)]
    state = {n: np.full(8, i, np.float32) for i, n in enumerate(names)}
    save_pt(tmp_path / "a.pt", state)
    save_pt(tmp_path / "b.pt", {n: v + 1 for n, v in state.items()})
    with open_checkpoint(tmp_path / "b.pt") as ckpt:
        offsets = {n: ref.offset for n, ref in ckpt.tensors.items()}
    assert all(isinstance(o, int) and o > 0 for o in offsets.values())
    assert len(set(offsets.values())) == len(names)  # one storage each
    seen: list[str] = []
    ModelDiff().diff(
        str(tmp_path / "a.pt"),
        str(tmp_path / "b.pt"),
        progress=lambda done, total, name: seen.append(name),
    )
    assert seen == sorted(names, key=lambda n: offsets[n])
