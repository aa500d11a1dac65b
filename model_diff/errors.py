"""Typed errors of model-diff and the exit codes they map to.

Every message names the file (when there is one), says what is wrong and how to fix it,
and renders on one line. Only ``model_diff.cli`` turns these into exit codes; the engine
raises them and never prints or exits.
"""

from __future__ import annotations

import os

#: Exit codes, in one place (STYLE.md): 0 ok, 1 check failed, 2 usage or unreadable input,
#: 3 internal bug. Git drivers always exit 0 whatever happens.
EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


class ModelDiffError(Exception):
    """Base of every expected error: exit code 2 unless a subclass says otherwise."""

    exit_code = EXIT_USAGE

    def __init__(
        self, message: str, *, path: str | os.PathLike[str] | None = None, hint: str | None = None
    ) -> None:
        self.message = message
        self.path = os.fspath(path) if path is not None else None
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        if self.hint:
            text = f"{text} (hint: {self.hint})"
        # One line, whatever the pieces held (file names can contain newlines).
        return " ".join(text.split("\n"))


class CheckpointError(ModelDiffError):
    """A checkpoint that cannot be read: missing, truncated, corrupt or malformed."""


class UnknownFormatError(CheckpointError):
    """Neither the extension nor the content identifies a supported format."""


class LFSObjectMissingError(CheckpointError):
    """A Git LFS pointer whose object is not in the local LFS store."""

    def __init__(self, *, path: str | os.PathLike[str] | None, oid: str, size: int) -> None:
        self.oid = oid
        self.size = size
        super().__init__(
            f"is a Git LFS pointer; object {oid[:12]} ({size} bytes) is not fetched",
            path=path,
            hint="run `git lfs fetch` (or `git lfs pull`) and try again",
        )


class UnsafeCheckpointError(CheckpointError):
    """A pickle that needs arbitrary code to load. No longer raised: the PyTorch reader runs
    nothing from a file (unknown classes are recorded, not run); kept so code catching it
    still imports."""


class MissingDependencyError(ModelDiffError):
    """An optional dependency (torch) is needed for this input and is not installed."""


class GitError(ModelDiffError):
    """A git operation failed: not a repository, unknown revision, path not in a tree."""


class PolicyError(ModelDiffError):
    """A check policy that is malformed: unknown key, wrong type, bad value."""


class UnwritableCheckpointError(ModelDiffError):
    """A checkpoint (or a merge result) that cannot be written back faithfully in its format:
    a training checkpoint with optimizer state, a pickle with objects, a dtype the format has
    no code for. Nothing is written."""
