"""Checkpoints whose tensor names try to take over a terminal or a CI log, and the check that
an output is safe to print (shared by the terminal-safety tests)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from model_diff.toy import save_safetensors

#: Tensor names from a hostile checkpoint: terminal escapes (clear screen, window title with
#: BEL, an OSC 8 link, an 8-bit CSI), DEL, a bidi override, a newline that forges a line,
#: and GitHub workflow commands (`::` at a line start, the legacy `##[` anywhere).
HOSTILE_NAMES = [
    "layers.0.\x1b[2J\x1b[H.weight",
    "layers.1.\x1b]0;pwned\x07.weight",
    "layers.2.\x1b]8;;https://evil.example\x1b\\link\x1b]8;;\x1b\\.weight",
    "layers.3.\x9b31m.weight",
    "layers.4.del\x7f.weight",
    "layers.5.evil\u202egnp.exe.weight",
    "layers.6.line\nforged header: ok.weight",
    "::set-output name=x::y",
    "##[set-output name=y;]z",
]

#: What must appear, in some form, in every output that lists the changed tensors.
MARKERS = ("pwned", "forged header", "set-output name=x")

_OUR_SGR = re.compile(r"\x1b\[[0-9;]*m")
_ANNOTATION = re.compile(r"::(error|warning|notice) ")


def hostile_pair(folder: Path, *, nan: bool = True) -> tuple[Path, Path]:
    """(old, new) safetensors files: every hostile tensor changes; one gains a NaN."""
    rng = np.random.default_rng(0)
    old = {n: rng.standard_normal((4, 4)).astype(np.float32) for n in HOSTILE_NAMES}
    old["model.norm.weight"] = np.ones(4, np.float32)
    new = {n: a + np.float32(0.25) for n, a in old.items()}
    new["model.norm.weight"] = old["model.norm.weight"]  # frozen: named by check
    if nan:
        new[HOSTILE_NAMES[6]][0, 0] = np.nan
    folder.mkdir(parents=True, exist_ok=True)
    a, b = folder / "old.safetensors", folder / "new.safetensors"
    save_safetensors(a, old)
    save_safetensors(b, new)
    return a, b


def assert_terminal_safe(
    text: str, *, what: str, sgr: bool = False, annotations: bool = False
) -> None:
    """No raw control, bidi or other non-printable character (ours: SGR colour codes when
    ``sgr``, and line breaks), no `##[`, and no line whose first non-blank characters are
    `::` unless it is one of the annotations ``--format github`` writes."""
    body = _OUR_SGR.sub("", text) if sgr else text
    bad = sorted({repr(c) for c in body if not c.isprintable() and c != "\n"})
    assert not bad, f"{what}: raw characters {bad} in\n{text}"
    assert "##[" not in text, f"{what}: a legacy workflow command in\n{text}"
    for line in text.split("\n"):
        if line.lstrip().startswith("::"):
            assert annotations and _ANNOTATION.match(line), f"{what}: command line {line!r}"
