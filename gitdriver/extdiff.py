"""The opt-in external diff driver (``diff.model-diff.command``): a compact semantic diff.

git calls it with 7 arguments (``path old-file old-hex old-mode new-file new-hex new-mode``),
9 for a rename or copy (``... new-path rename-info``), and 1 for an unmerged path. A missing
side has mode ``.`` (its file is ``/dev/null`` on POSIX; the mode is what we trust). git
prints no ``diff --git`` header for such a driver, so ``render_ext_diff`` writes its own,
then one line per changed tensor and the analysis's insights.

This module must not print or exit: ``model_diff.cli`` prints the text and always exits 0
(a non-zero exit makes git stop with "external diff died"). It runs once per changed file,
so it imports neither dulwich nor the report templates.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from model_diff.checkpoint import Checkpoint
from model_diff.errors import ModelDiffError
from model_diff.terminal import guard_lines, printable

from .git import display_path

MISSING = "."


@dataclass(frozen=True)
class ExtDiffArgs:
    """git's external-diff arguments, named."""

    path: str
    old_file: str
    old_hex: str
    old_mode: str
    new_file: str
    new_hex: str
    new_mode: str
    new_path: str | None = None
    rename_info: str | None = None

    @property
    def old_missing(self) -> bool:
        return self.old_mode == MISSING

    @property
    def new_missing(self) -> bool:
        return self.new_mode == MISSING


def parse_args(argv: Sequence[str]) -> ExtDiffArgs | str:
    """The arguments as ``ExtDiffArgs``; for an unmerged path (1 argument) the path itself."""
    if len(argv) == 1:
        return argv[0]
    if len(argv) not in (7, 9):
        raise ModelDiffError(
            f"ext-diff takes the 7 or 9 arguments git passes, got {len(argv)}",
            hint='configure it as diff.model-diff.command = "<python>" -m model_diff ext-diff',
        )
    return ExtDiffArgs(*argv)


def render_ext_diff(argv: Sequence[str], *, cwd: str | None = None) -> str:
    """The whole output for one file; errors become a line of it, never an exception.

    Paths and tensor names pass through ``printable`` (a newline in a name cannot forge a
    header line, an escape sequence cannot reach the terminal) and no line can start a CI
    workflow command (``guard_lines``).
    """
    try:
        args = parse_args(argv)
    except ModelDiffError as exc:
        return guard_lines(f"model-diff: error: {printable(str(exc))}\n")
    if isinstance(args, str):
        return guard_lines(f"* Unmerged path {printable(args)}\n")
    lines = _header(args)
    try:
        lines += _body(args, cwd)
    except ModelDiffError as exc:
        lines.append(f"model-diff: error: {printable(str(exc))}")
    return guard_lines("\n".join(lines) + "\n")


def _header(a: ExtDiffArgs) -> list[str]:
    # printable shows controls escaped and a non-UTF-8 name's bytes as \xNN (display_path's form)
    path, new_path = printable(a.path), printable(a.new_path or a.path)
    lines = [f"diff --git a/{path} b/{new_path}"]
    if a.rename_info:
        lines += [printable(ln) for ln in a.rename_info.split("\n") if ln]
    if a.old_missing:
        lines.append(f"new file mode {a.new_mode}")
    elif a.new_missing:
        lines.append(f"deleted file mode {a.old_mode}")
    elif a.old_mode != a.new_mode:
        lines += [f"old mode {a.old_mode}", f"new mode {a.new_mode}"]
    old_hex = "0000000" if a.old_missing else a.old_hex[:7]
    new_hex = "0000000" if a.new_missing else a.new_hex[:7]
    same_mode = (
        "" if a.old_missing or a.new_missing or a.old_mode != a.new_mode else (f" {a.new_mode}")
    )
    lines.append(f"index {old_hex}..{new_hex}{same_mode}")
    lines.append("--- /dev/null" if a.old_missing else f"--- a/{path}")
    lines.append("+++ /dev/null" if a.new_missing else f"+++ b/{new_path}")
    return lines


def _body(a: ExtDiffArgs, cwd: str | None) -> list[str]:
    if a.old_missing and a.new_missing:
        return []
    if not (a.old_missing or a.new_missing) and a.old_hex == a.new_hex and set(a.old_hex) != {"0"}:
        return ["content identical"]  # a pure rename or a mode change: nothing to read
    if a.old_missing or a.new_missing:
        side = a.new_file if a.old_missing else a.old_file
        with open_side(side, display_path(a.new_path or a.path), cwd) as ckpt:
            info = describe(ckpt)
        verb = "added" if a.old_missing else "removed"
        return [f"{verb}: {facts(info)}"]
    old = open_side(a.old_file, f"a/{display_path(a.path)}", cwd)
    try:
        new = open_side(a.new_file, f"b/{display_path(a.new_path or a.path)}", cwd)
        try:
            return _compact(old, new)
        finally:
            new.close()
    finally:
        old.close()


def open_side(path: str, label: str, cwd: str | None = None) -> Checkpoint:
    """Open a file git handed over, named ``label`` (its repository path) in messages.

    git's temporary copies keep the basename, and an LFS pointer (``GIT_LFS_SKIP_SMUDGE``)
    is resolved by the reader from the store of the repository git runs us in.
    """
    from model_diff.formats import open_file

    full = os.path.join(cwd, path) if cwd else path
    if not os.path.isfile(full):
        raise ModelDiffError(
            "no such file",
            path=label,
            hint="git passes existing files; check the driver configuration",
        )
    return open_file(full, label=label, name=label)


def describe(ckpt: Checkpoint) -> dict[str, Any]:
    """``Checkpoint.describe()`` without the path (a temp file here: not worth showing)."""
    info = ckpt.describe()
    del info["path"]
    return info


def _compact(old: Checkpoint, new: Checkpoint) -> list[str]:
    from model_diff.pipeline import compare

    result = compare(old, new)
    diffs, analysis = result.diffs, result.analysis
    lines = [f"old: {facts(describe(old))}", f"new: {facts(describe(new))}"]
    mapping = result.summary.name_mapping
    if mapping:
        lines.append(f"mapping: {printable(str(mapping.get('description', '')))}")
    counts: dict[str, int] = {}
    for d in diffs:
        counts[str(d.change_type)] = counts.get(str(d.change_type), 0) + 1
    order = (
        "modified",
        "added",
        "removed",
        "shape_changed",
        "dtype_changed",
        "renamed",
        "tied",
        "unchanged",
    )
    lines.append(
        "tensors: "
        + ", ".join(f"{counts[k]} {k.replace('_', ' ')}" for k in order if counts.get(k))
    )
    for d in diffs:
        if d.is_changed or str(d.change_type) in ("renamed", "tied"):
            lines.append(_tensor_line(d))
    if analysis.insights:
        lines.append("insights:")
        lines += [f"  [{i.severity}] {printable(i.title)} ({i.code})" for i in analysis.insights]
    return lines


def _tensor_line(d: Any) -> str:
    kind = str(d.change_type)
    name = printable(d.name)
    if kind == "added":
        return f"+ {name}  {d.new_dtype} {_shape(d.new_shape)}"
    if kind == "removed":
        return f"- {name}  {d.old_dtype} {_shape(d.old_shape)}"
    if kind == "shape_changed":
        return f"! {name}  shape {_shape(d.old_shape)} -> {_shape(d.new_shape)}"
    if kind == "dtype_changed":
        return f"! {name}  dtype {d.old_dtype} -> {d.new_dtype}"
    if kind in ("renamed", "tied"):
        from model_diff.report.view import describe_pairing

        return f"= {printable(describe_pairing(d))}"
    return (
        f"~ {name}  {d.new_dtype} {_shape(d.new_shape)}  rel {_num(d.relative_change)}"
        f"  cos {_num(d.cosine_sim, '.6f')}  max {_num(d.max_diff)}"
        f"  changed {_num(d.change_ratio, '.1%')}"
    )


def facts(info: dict[str, Any]) -> str:
    """One side's description on one line: counts, format and dtypes."""
    return (
        f"{info['num_tensors']:,} tensors, {info['num_parameters']:,} parameters "
        f"({info['format']}; {', '.join(info['dtypes'])})"
    )


def _shape(shape: Sequence[int] | None) -> str:
    return "[" + ", ".join(str(s) for s in shape or ()) + "]"


def _num(x: float | None, spec: str = ".3g") -> str:
    return "n/a" if x is None else format(x, spec)
