"""A training run's checkpoints on disk: a folder or a glob, put in training order.

``expand(args, order=)`` turns ``model-diff timeline``'s arguments into checkpoint paths and
says how they were ordered. One argument that is a folder holding a run (several checkpoint
files, or several model folders such as the Trainer's ``checkpoint-500/``), or a glob
(``'runs/*.pt'``, expanded here when the shell did not), is expanded; several arguments are
taken as given, in training order (a glob among them expands in place).

Order (``order="auto"``): by the training step in each checkpoint's metadata (``global_step``,
``step``, ``iteration``, ... ; else ``epoch``; a HuggingFace folder's ``trainer_state.json``)
when every checkpoint has one and no two share it: the trainer's own record wins over names.
Otherwise by name, naturally (``step_900`` before ``step_1000``). ``order="name"`` and
``order="metadata"`` force one rule (``metadata`` is an error where a step is missing).
Reading the metadata opens each checkpoint once (headers only) and closes it at once.

This module must not print, exit, or import click or the git package.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .checkpoint import Checkpoint
from .errors import CheckpointError, ModelDiffError
from .formats import hf
from .naming import natural_key

ORDERS = ("auto", "name", "metadata")
#: Metadata keys (the last dotted part, lower-case) that hold a training step, preferred first.
STEP_KEYS = ("global_step", "step", "iteration", "iter", "num_updates", "steps")
EPOCH_KEYS = ("epoch",)
_GLOB_CHARS = "*?["
_MAX_STATE_BYTES = 16 << 20

Opener = Callable[[str], Checkpoint]


def is_glob(arg: str) -> bool:
    return any(c in arg for c in _GLOB_CHARS) and not os.path.exists(arg)


def run_members(folder: str) -> list[str]:
    """The checkpoints of a run folder: its model sub-folders when it holds two or more (the
    Trainer's ``checkpoint-N/``), else its checkpoint files and model sub-folders; the folder
    itself when it is one model."""
    try:
        names = sorted(os.listdir(folder))
    except OSError as e:
        raise CheckpointError(
            f"cannot be listed ({e.strerror or e})", path=folder, hint="check its permissions"
        ) from None
    subdirs = [
        os.path.join(folder, n)
        for n in names
        if os.path.isdir(os.path.join(folder, n)) and hf.is_model_folder(os.path.join(folder, n))
    ]
    if len(subdirs) >= 2:
        return subdirs
    if hf.is_model_folder(folder):
        return [folder]
    return [os.path.join(folder, n) for n in hf.checkpoint_files(folder)] + subdirs


def expand(
    args: Sequence[str], *, order: str = "auto", opener: Opener | None = None
) -> tuple[list[str], str]:
    """(checkpoint paths, how they were ordered: ``given``, ``name`` or ``metadata:KEY``).

    ``opener`` opens a checkpoint to read its metadata (default ``formats.open_checkpoint``).
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}")
    if len(args) == 1 and (os.path.isdir(args[0]) or is_glob(args[0])):
        members = run_members(args[0]) if os.path.isdir(args[0]) else _glob(args[0])
        return sort_run(members, order=order, opener=opener)
    out: list[str] = []
    how = "given"
    for a in args:
        if is_glob(a):
            members, how_here = sort_run(_glob(a), order=order, opener=opener)
            out += members
            how = how_here if len(args) == 1 else "given"
        else:
            out.append(a)
    return out, how


def _glob(pattern: str) -> list[str]:
    found = [
        p
        for p in glob.glob(pattern)
        if (os.path.isfile(p) and not hf.is_training_file(os.path.basename(p)))
        or (os.path.isdir(p) and hf.is_model_folder(p))
    ]
    if not found:
        raise CheckpointError(
            "matches no checkpoint file or model folder",
            path=pattern,
            hint="check the pattern (quote it so the shell leaves it to model-diff)",
        )
    return found


@dataclass(frozen=True)
class Recorded:
    """What a checkpoint's metadata says about where it sits in training: a step and an
    epoch, each with the metadata key it came from (None where absent)."""

    step: int | None = None
    step_key: str | None = None
    epoch: int | None = None
    epoch_key: str | None = None


def sort_run(
    paths: Sequence[str], *, order: str = "auto", opener: Opener | None = None
) -> tuple[list[str], str]:
    """``paths`` in training order and the rule that decided it (see the module docstring)."""
    by_name = sorted(paths, key=lambda p: (natural_key(os.path.basename(p.rstrip(os.sep))), p))
    if order == "name" or len(paths) < 2:
        return by_name, "name"
    recorded = [read_step(p, opener) for p in by_name]
    for values, keys in (
        ([r.step for r in recorded], [r.step_key for r in recorded]),
        ([r.epoch for r in recorded], [r.epoch_key for r in recorded]),
    ):
        known = [v for v in values if v is not None]
        if len(known) == len(values) and len(set(known)) == len(known):
            ordered = sorted(zip(known, by_name, strict=True))
            return [p for _, p in ordered], f"metadata:{keys[0]}"
    if order == "metadata":
        missing = [p for p, r in zip(by_name, recorded, strict=True) if r.step is None]
        what = (
            f"{missing[0]} has no training step in its metadata"
            if missing
            else "two checkpoints carry the same step"
        )
        raise ModelDiffError(
            f"cannot order by metadata: {what}",
            hint="use --order name (natural order of the file names)",
        )
    return by_name, "name"


def read_step(path: str, opener: Opener | None = None) -> Recorded:
    """The training step and epoch a checkpoint records: the first of ``STEP_KEYS`` /
    ``EPOCH_KEYS`` (last dotted part of a metadata key, any case) holding an integer."""
    meta: dict[str, str] = {}
    if os.path.isdir(path):
        meta.update(_trainer_state(path))
    open_ = opener or _open
    with open_(path) as ckpt:
        meta.update({k: v for k, v in ckpt.metadata.items() if k not in meta})
    found: list[tuple[int | None, str | None]] = []
    for family in (STEP_KEYS, EPOCH_KEYS):
        hit: tuple[int | None, str | None] = (None, None)
        for wanted in family:
            for k, v in sorted(meta.items()):
                n = _as_int(v)
                if k.rsplit(".", 1)[-1].lower() == wanted and n is not None:
                    hit = (n, k)
                    break
            if hit[0] is not None:
                break
        found.append(hit)
    (step, step_key), (epoch, epoch_key) = found
    return Recorded(step, step_key, epoch, epoch_key)


def _as_int(v: str) -> int | None:
    try:
        f = float(v)
    except ValueError:
        return None
    return int(f) if f.is_integer() else None


def _trainer_state(folder: str) -> dict[str, str]:
    """``global_step`` / ``epoch`` of a HuggingFace Trainer folder's ``trainer_state.json``."""
    path = os.path.join(folder, "trainer_state.json")
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_STATE_BYTES + 1)
        state = json.loads(raw) if len(raw) <= _MAX_STATE_BYTES else None
    except (OSError, ValueError):
        return {}
    if not isinstance(state, dict):
        return {}
    return {
        f"trainer_state.{k}": str(state[k])
        for k in ("global_step", "epoch")
        if isinstance(state.get(k), (int, float)) and not isinstance(state.get(k), bool)
    }


def _open(path: str) -> Checkpoint:
    from .formats import open_checkpoint

    return open_checkpoint(path)
