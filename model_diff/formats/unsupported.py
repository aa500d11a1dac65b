"""Formats model-diff recognises but does not read, each with the message and fix to give.

Without this, a Keras ``.h5`` file would get the generic "give it the extension of its real
format" hint, which is wrong: the extension is its real format. ``by_content(head)``
names the format from its magic bytes, ``by_extension(ext)`` from its extension.
This module must not import anything heavier than the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Unsupported:
    message: str
    hint: str


_KERAS_HINT = (
    "convert it to safetensors: load the model in Keras and save "
    "{w.path: w.numpy() for w in model.weights} with safetensors.numpy.save_file, or export "
    "it to ONNX with tf2onnx"
)
HDF5 = Unsupported(
    "is an HDF5 file (Keras .h5 weights); Keras/HDF5 weights are not supported", _KERAS_HINT
)
KERAS = Unsupported("is a Keras 3 archive (.keras); Keras weights are not supported", _KERAS_HINT)
TFLITE = Unsupported(
    "is a TensorFlow Lite model; TFLite files are not supported",
    "compare the checkpoint it was converted from (or its ONNX export via tflite2onnx)",
)
TF_GRAPH = Unsupported(
    "is a TensorFlow graph or SavedModel file; TensorFlow formats are not supported",
    "export the model to ONNX with tf2onnx, or save its weights as safetensors",
)
GGML_LEGACY = Unsupported(
    "is a legacy GGML/GGJT file (the format before GGUF); it is not supported",
    "convert it to GGUF with llama.cpp's convert_llama_ggml_to_gguf.py",
)
PICKLE_MODEL = Unsupported(
    "is a joblib/pickle model file (scikit-learn and similar), not a tensor checkpoint",
    "save the model's arrays as .npz or safetensors to compare them",
)

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_GGML_MAGICS = (b"lmgg", b"fmgg", b"tjgg")  # 'ggml' 'ggmf' 'ggjt' as little-endian uint32

_BY_EXTENSION = {
    ".h5": HDF5,
    ".hdf5": HDF5,
    ".keras": KERAS,
    ".tflite": TFLITE,
    ".pb": TF_GRAPH,
    ".joblib": PICKLE_MODEL,
    ".ggml": GGML_LEGACY,
}


def by_content(head: bytes) -> Unsupported | None:
    """The unsupported format a file's first bytes identify (checked before any extension
    is trusted: legacy GGML files are usually named ``.bin``), or None."""
    if head.startswith(_HDF5_MAGIC):
        return HDF5
    if head[:4] in _GGML_MAGICS:
        return GGML_LEGACY
    if head[4:8] == b"TFL3":
        return TFLITE
    return None


def by_extension(ext: str) -> Unsupported | None:
    """The unsupported format an extension names (``.h5``, ``.keras``...), or None."""
    return _BY_EXTENSION.get(ext.lower())
