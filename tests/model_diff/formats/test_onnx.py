"""ONNX reader and ONNX <-> source name mapping (issue 14, acceptance 4), and the one-line
messages for formats model-diff does not read (issue 14, item 5)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from model_diff import open_checkpoint
from model_diff.diff import ChangeType
from model_diff.errors import CheckpointError, UnknownFormatError
from model_diff.pipeline import compare
from model_diff.toy import save_safetensors

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _export(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """A small network exported by torch.onnx (TorchScript exporter, offline) and its
    state_dict as safetensors."""
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(10, 8)
            self.fc1 = torch.nn.Linear(8, 16)
            self.ln = torch.nn.LayerNorm(16)
            self.fc2 = torch.nn.Linear(16, 16, bias=False)  # square: transposed all the same
            self.head = torch.nn.Linear(16, 4)

        def forward(self, x):  # type: ignore[no-untyped-def]
            return self.head(self.fc2(self.ln(torch.relu(self.fc1(self.emb(x))))))

    torch.manual_seed(0)
    net = Net().eval()
    path = tmp_path / "net.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.randint(0, 10, (2, 3)),),
            str(path),
            dynamo=False,
            input_names=["ids"],
            output_names=["logits"],
        )
    state = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
    save_safetensors(tmp_path / "net.safetensors", state)
    return path, tmp_path / "net.safetensors", state


@pytest.mark.torch
def test_torch_export_pairs_every_parameter_with_its_initializer(tmp_path: Path) -> None:
    """Acceptance 4: every parameter pairs, MatMul transposes recognised, values equal."""
    onnx_path, st_path, state = _export(tmp_path)
    with open_checkpoint(onnx_path) as o:
        assert any(n.startswith("onnx::MatMul_") for n in o.tensors)
        assert o.metadata["onnx.inputs"] == "ids[2,3]"
        assert o.metadata["onnx.opset"].startswith("ai.onnx=")
        assert o.metadata["onnx.producer"].startswith("pytorch")
    with open_checkpoint(st_path) as s, open_checkpoint(onnx_path) as o:
        c = compare(s, o)
    assert (c.summary.added_parameters, c.summary.removed_parameters) == (0, 0)
    assert {d.name for d in c.diffs} == set(state)
    assert c.summary.unchanged_parameters == len(state)  # exact: float32 both sides
    m = c.summary.name_mapping
    assert m is not None and m["side"] == "new"
    assert set(m["transforms"]["transpose"]) == {"fc1.weight", "fc2.weight", "head.weight"}
    assert m["mapped"] == m["total"] == len(state) and m["unmapped"] == []


@pytest.mark.torch
def test_external_data_is_mapped_from_its_file(tmp_path: Path) -> None:
    """Initializers saved as external data are read from the side file, same values."""
    onnx_path, st_path, state = _export(tmp_path)
    model = onnx.load(str(onnx_path))
    ext = tmp_path / "ext"
    ext.mkdir()
    onnx.save_model(
        model,
        str(ext / "net.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    assert (ext / "weights.bin").stat().st_size > 0
    with open_checkpoint(st_path) as s, open_checkpoint(ext / "net.onnx") as o:
        c = compare(s, o)
        # byte offsets in the side file: the order a pass reads the initializers in
        offsets = [ref.offset for ref in o.tensors.values()]
        assert all(isinstance(v, int) for v in offsets) and len(set(offsets)) == len(offsets)
    assert c.summary.unchanged_parameters == len(state) and c.summary.total_parameters == len(state)
    (ext / "weights.bin").unlink()
    with pytest.raises(CheckpointError, match=r"external data file 'weights\.bin'.*missing"):
        open_checkpoint(ext / "net.onnx")


def _helper_model(path: Path, inits: list[np.ndarray], names: list[str], nodes: list) -> None:  # type: ignore[type-arg]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        initializer=[numpy_helper.from_array(a, n) for a, n in zip(inits, names, strict=True)],
    )
    onnx.save_model(helper.make_model(graph), str(path))


def test_unmappable_initializers_are_listed(tmp_path: Path) -> None:
    """An onnx::MatMul_N weight outside any module scope cannot be named: listed unmapped."""
    rng = np.random.default_rng(0)
    w, b, lost = (rng.standard_normal(s).astype(np.float32) for s in ((3, 4), (3,), (4, 3)))
    nodes = [
        helper.make_node("MatMul", ["x", "onnx::MatMul_7"], ["h"], name="/proj/MatMul"),
        helper.make_node("MatMul", ["h", "onnx::MatMul_9"], ["y0"], name="MatMul_top"),
        helper.make_node("Add", ["y0", "proj.bias"], ["y"], name="/proj/Add"),
    ]
    _helper_model(
        tmp_path / "m.onnx",
        [w.T.copy(), lost, b],
        ["onnx::MatMul_7", "onnx::MatMul_9", "proj.bias"],
        nodes,
    )
    save_safetensors(tmp_path / "m.safetensors", {"proj.weight": w, "proj.bias": b})
    with (
        open_checkpoint(tmp_path / "m.safetensors") as s,
        open_checkpoint(tmp_path / "m.onnx") as o,
    ):
        c = compare(s, o)
    m = c.summary.name_mapping
    assert m is not None and m["unmapped"] == ["onnx::MatMul_9"]
    assert m["transforms"] == {
        "name from MatMul scope": ["proj.weight"],
        "transpose": ["proj.weight"],
    }
    by_name = {d.name: d.change_type for d in c.diffs}
    assert by_name == {
        "proj.weight": ChangeType.UNCHANGED,
        "proj.bias": ChangeType.UNCHANGED,
        "onnx::MatMul_9": ChangeType.ADDED,
    }


def test_corrupt_onnx_is_a_checkpoint_error(tmp_path: Path) -> None:
    """Bytes that are not a protobuf model give one line naming the file."""
    (tmp_path / "bad.onnx").write_bytes(b"\x0a\xff\xff\xff\xff\x0f garbage")
    with pytest.raises(CheckpointError, match=r"bad\.onnx: is not a readable ONNX model"):
        open_checkpoint(tmp_path / "bad.onnx")


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("w.h5", b"\x89HDF\r\n\x1a\n" + bytes(64), "Keras/HDF5 weights are not supported"),
        ("w.weights", b"\x89HDF\r\n\x1a\n" + bytes(64), "Keras/HDF5 weights are not supported"),
        ("m.keras", b"PK\x03\x04" + bytes(64), "Keras 3 archive"),
        ("m.tflite", b"\x1c\x00\x00\x00TFL3" + bytes(64), "TensorFlow Lite"),
        ("old.bin", b"tjgg" + bytes(64), "legacy GGML/GGJT"),
    ],
)
def test_unsupported_formats_get_their_own_message(
    tmp_path: Path, name: str, data: bytes, expected: str
) -> None:
    """Item 5: a correct one-line message instead of the wrong-extension hint."""
    (tmp_path / name).write_bytes(data)
    with pytest.raises(UnknownFormatError) as info:
        open_checkpoint(tmp_path / name)
    text = str(info.value)
    assert expected in text and "\n" not in text
    assert "extension of its real format" not in text
