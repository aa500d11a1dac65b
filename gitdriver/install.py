"""``model-diff install`` / ``uninstall`` / ``status``: register the git drivers, reversibly.

What install writes, in the chosen scope (``--local`` default, ``--global``, ``--system``), with
``git config`` subprocess calls (git edits its own files; we never rewrite them wholesale):

    diff.model-diff.textconv   "<python>" -m model_diff textconv
    difftool.model-diff.cmd    "<python>" -m model_diff difftool "$LOCAL" "$REMOTE" "$MERGED"
    merge.model-diff.name      model-diff: tensor-by-tensor checkpoint merge
    merge.model-diff.driver    "<python>" -m model_diff merge-driver %O %A %B %P
    mergetool.model-diff.cmd   "<python>" -m model_diff mergetool "$BASE" "$LOCAL" "$REMOTE"
                                                                    "$MERGED"   (one line)
    mergetool.model-diff.trustExitCode true
    diff.model-diff.cachetextconv true            (--cachetextconv; the textconv command then
                                                   carries --format-version=N, see below)
    diff.model-diff.command    <hand-off to difftool>; exec "<python>" -m model_diff ext-diff
                                                  (--external; see DIFFTOOL_HANDOFF)

plus attribute lines (``model_diff.gitdriver.attributes``) in ``<top>/.gitattributes`` (local),
``core.attributesFile`` or ``$XDG_CONFIG_HOME/git/attributes`` (global), the system
``core.attributesFile`` or ``/etc/gitattributes`` (system).

The commands use the *current* interpreter, quoted for git's ``sh``, so they work from GUIs and
virtualenvs where ``model-diff`` is not on PATH.

``--cachetextconv`` turns on git's own textconv cache (notes under
``refs/notes/textconv/model-diff``, keyed by blob id and invalidated only when the command string
changes): the output-format version is embedded in the command so an upgrade that changes the
output invalidates it. ``--external`` adds the external diff command; git lets that command
shadow ``git difftool`` (GIT-NOTES 3d), so the command first hands a call that comes from
``git difftool`` back to git's difftool helper (``DIFFTOOL_HANDOFF``).

This module must not import click or dulwich and never prints: it returns what it did.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from model_diff.errors import GitError, ModelDiffError

from . import attributes, git
from .attributes import DEFAULT_PATTERNS, DRIVER
from .cache import TEXTCONV_FORMAT_VERSION

SCOPES = ("local", "global", "system")
_OURS_MARKERS = ("model_diff", "model-diff")


@dataclass
class Change:
    """One thing install or uninstall did (or would have done), for the report."""

    what: str
    detail: str

    def __str__(self) -> str:
        return f"{self.what}: {self.detail}"


@dataclass
class Outcome:
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def python_command(executable: str | None = None) -> str:
    """The interpreter, quoted for git's ``sh``: ``"<path>"``, or single quotes when needed."""
    exe = executable or sys.executable
    if any(c in exe for c in '"$`\\\n'):
        return shlex.quote(exe)
    return f'"{exe}"'


#: Prefix of the external diff command. ``git difftool`` runs ``git diff`` with
#: ``GIT_EXTERNAL_DIFF=git-difftool--helper``, but an attribute driver's ``command`` takes
#: precedence over that variable, so without this every ``git difftool`` (``-t model-diff``,
#: ``-x CMD``, ``diff.tool``) would print the external diff instead of running the tool
#: (GIT-NOTES 3d). git runs the command through ``sh`` with the 7/9 arguments appended as
#: ``"$@"``; handing them to the helper restores difftool exactly.
DIFFTOOL_HANDOFF = (
    'case "$GIT_EXTERNAL_DIFF" in *git-difftool--helper) exec git difftool--helper "$@";; esac;'
)


def driver_config(
    *, external: bool, cachetextconv: bool, executable: str | None = None
) -> dict[str, str]:
    """The config keys and values install writes for these options."""
    py = python_command(executable)
    textconv = f"{py} -m model_diff textconv"
    if cachetextconv:
        textconv += f" --format-version={TEXTCONV_FORMAT_VERSION}"
    cfg = {
        f"diff.{DRIVER}.textconv": textconv,
        f"difftool.{DRIVER}.cmd": f'{py} -m model_diff difftool "$LOCAL" "$REMOTE" "$MERGED"',
        f"merge.{DRIVER}.name": MERGE_DRIVER_NAME,
        f"merge.{DRIVER}.driver": f"{py} -m model_diff merge-driver %O %A %B %P",
        f"mergetool.{DRIVER}.cmd": (
            f'{py} -m model_diff mergetool "$BASE" "$LOCAL" "$REMOTE" "$MERGED"'
        ),
        f"mergetool.{DRIVER}.trustExitCode": "true",
    }
    if cachetextconv:
        cfg[f"diff.{DRIVER}.cachetextconv"] = "true"
    if external:
        cfg[f"diff.{DRIVER}.command"] = f"{DIFFTOOL_HANDOFF} exec {py} -m model_diff ext-diff"
    return cfg


_ALL_KEYS = (
    f"diff.{DRIVER}.textconv",
    f"diff.{DRIVER}.cachetextconv",
    f"diff.{DRIVER}.command",
    f"difftool.{DRIVER}.cmd",
    f"merge.{DRIVER}.name",
    f"merge.{DRIVER}.driver",
    f"mergetool.{DRIVER}.cmd",
    f"mergetool.{DRIVER}.trustExitCode",
)
_SECTIONS = (f"diff.{DRIVER}", f"difftool.{DRIVER}", f"merge.{DRIVER}", f"mergetool.{DRIVER}")
#: The config keys of every section install writes (``git config --get-regexp``).
KEYS_REGEX = rf"^(diff|difftool|merge|mergetool)\.{DRIVER}\."
#: ``merge.model-diff.name``: what git shows for the driver.
MERGE_DRIVER_NAME = "model-diff: tensor-by-tensor checkpoint merge"
#: a key install sets only when the config file lacked its final newline (git adds one)
_NOEOL_KEY = f"diff.{DRIVER}.restorenoeol"


def _is_ours(key: str, value: str) -> bool:
    if key.endswith((".cachetextconv", ".trustexitcode")) or key == _NOEOL_KEY:
        return True
    return any(m in value for m in _OURS_MARKERS)


def _lower_keys(keys: dict[str, str]) -> dict[str, str]:
    """Config keys as git compares them: section and variable names are case-insensitive
    (``git config --get-regexp`` prints them lower-cased; ``trustExitCode`` is
    ``trustexitcode``); the subsection (``model-diff``) is lower-case already."""
    return {k.lower(): v for k, v in keys.items()}


def _scope_args(scope: str) -> list[str]:
    if scope not in SCOPES:
        raise ModelDiffError(f"unknown scope {scope!r}", hint="use local, global or system")
    return [f"--{scope}"]


def _repo_top(scope: str, cwd: Path) -> Path | None:
    repo = git.Repo.find(cwd)
    top = Path(repo.top) if repo is not None else None
    if scope == "local" and top is None:
        raise GitError(
            f"{cwd}: not inside a git repository (or in a bare one)",
            hint="cd into a repository, or use --global",
        )
    return top


def config_file(scope: str, cwd: Path) -> Path | None:
    """The file git writes for ``git config --<scope>``, where it can be known."""
    if scope == "local":
        repo = git.Repo.find(cwd)
        return Path(repo.common_dir).resolve() / "config" if repo is not None else None
    if scope == "global":
        env = os.environ.get("GIT_CONFIG_GLOBAL")
        if env:
            return Path(env)
        home = Path(os.path.expanduser("~"))
        dot = home / ".gitconfig"
        xdg = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "git" / "config"
        return xdg if (not dot.exists() and xdg.exists()) else dot
    env = os.environ.get("GIT_CONFIG_SYSTEM")
    if env:
        return Path(env)
    proc = git.run(["config", "--system", "--show-origin", "--list"], cwd=cwd, check=False)
    first = os.fsdecode(proc.stdout).split("\t", 1)[0] if proc.returncode == 0 else ""
    return Path(first[len("file:") :]) if first.startswith("file:") else None


def attributes_file(scope: str, cwd: Path) -> Path:
    """Where install writes attribute lines for a scope (docs/git.md, "What install writes")."""
    if scope == "local":
        top = _repo_top(scope, cwd)
        assert top is not None  # _repo_top raised otherwise
        return top / ".gitattributes"
    configured = git.config_get([f"--{scope}"], "core.attributesFile", cwd=cwd)
    if configured:
        return Path(os.path.expanduser(configured))
    if scope == "global":
        base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
        return Path(base) / "git" / "attributes"
    return Path("/etc/gitattributes")


def _read_text(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return None


def _write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.model-diff-tmp")
    data = text.encode("utf-8", errors="surrogateescape")
    mode = path.stat().st_mode & 0o7777 if path.exists() else None
    with open(tmp, "wb") as f:
        f.write(data)
    if mode is not None:
        os.chmod(tmp, mode)
    os.replace(tmp, path)


def install(
    *,
    scope: str = "local",
    patterns: list[str] | None = None,
    external: bool = False,
    cachetextconv: bool = False,
    cwd: str | os.PathLike[str] | None = None,
    executable: str | None = None,
) -> Outcome:
    """Register the driver and its attributes; a second identical call changes nothing."""
    here = Path(cwd or os.getcwd())
    sargs = _scope_args(scope)
    _repo_top(scope, here)
    out = Outcome()
    config = driver_config(external=external, cachetextconv=cachetextconv, executable=executable)
    current = _lower_keys(git.config_keys(sargs, KEYS_REGEX, cwd=here))
    wanted = _lower_keys(config)
    for key, value in current.items():
        if key in wanted and value != wanted[key] and not _is_ours(key, value):
            raise ModelDiffError(
                f"{key} is already set to {value!r}, not by model-diff",
                hint=f"remove it (git config --{scope} --unset {key}) and run install again",
            )
    if any(current.get(k) != v for k, v in wanted.items()):
        cfg = config_file(scope, here)
        if (
            cfg is not None
            and not any(k.lower() in current for k in _ALL_KEYS)
            and cfg.is_file()
            and cfg.stat().st_size
            and not cfg.read_bytes().endswith(b"\n")
        ):
            # git adds the missing final newline when it appends our section; note it so
            # uninstall can give the file back byte for byte.
            git.config_set(sargs, _NOEOL_KEY, "true", cwd=here)
    for key, value in config.items():
        if current.get(key.lower()) != value:
            git.config_set(sargs, key, value, cwd=here)
            out.changes.append(Change(f"git config --{scope}", f"{key} = {value}"))
    for key in (k.lower() for k in _ALL_KEYS):
        if key in current and key not in wanted:
            git.config_unset(sargs, key, cwd=here)
            out.changes.append(Change(f"git config --{scope}", f"unset {key}"))
    attr_path = attributes_file(scope, here)
    before = _read_text(attr_path)
    after = attributes.install_text(before, list(patterns or DEFAULT_PATTERNS))
    if after != (before or ""):
        _write_text_atomic(attr_path, after)
        added, edited = attributes.installed(after)
        out.changes.append(
            Change(
                str(attr_path),
                f"diff={DRIVER} merge={DRIVER} for " + " ".join([*added, *edited]),
            )
        )
        for pat, attrs in edited.items():
            swapped = " and ".join(f"{a}=lfs to {a}={DRIVER}" for a in attrs)
            out.notes.append(
                f"{attr_path}: changed {swapped} on the existing line for {pat} "
                "(uninstall restores it)"
            )
    if external:
        out.notes.append(
            "external diff on: `git diff` runs model-diff ext-diff; `git log -p` "
            "and `git show` keep using the textconv (add --ext-diff to change "
            "that)"
        )
    if cachetextconv:
        out.notes.append(
            f"git's textconv cache on: clear it with `git update-ref -d "
            f"refs/notes/textconv/{DRIVER}`"
        )
    return out


def uninstall(*, scope: str = "local", cwd: str | os.PathLike[str] | None = None) -> Outcome:
    """Take back what install did in this scope; a second call changes nothing."""
    here = Path(cwd or os.getcwd())
    sargs = _scope_args(scope)
    _repo_top(scope, here)
    out = Outcome()
    current = _lower_keys(git.config_keys(sargs, KEYS_REGEX, cwd=here))
    noeol = current.get(_NOEOL_KEY) == "true"
    ours = {k.lower() for k in _ALL_KEYS}
    for key, value in current.items():
        if key in ours and _is_ours(key, value):
            git.config_unset(sargs, key, cwd=here)
            out.changes.append(Change(f"git config --{scope}", f"unset {key}"))
    if noeol:
        git.config_unset(sargs, _NOEOL_KEY, cwd=here)
    remaining = git.config_keys(sargs, KEYS_REGEX, cwd=here)
    for section in _SECTIONS:
        if not any(k.startswith(section + ".") for k in remaining):
            git.config_remove_section(sargs, section, cwd=here)
    if noeol:
        cfg = config_file(scope, here)
        if cfg is not None and cfg.is_file():
            data = cfg.read_bytes()
            if data.endswith(b"\n"):
                with open(cfg, "r+b") as f:
                    f.truncate(len(data) - 1)
    attr_path = attributes_file(scope, here)
    before = _read_text(attr_path)
    if before is not None:
        after = attributes.uninstall_text(before)
        if after is None:
            attr_path.unlink()
            out.changes.append(Change(str(attr_path), "removed (install had created it)"))
        elif after != before:
            _write_text_atomic(attr_path, after)
            out.changes.append(Change(str(attr_path), "removed model-diff lines"))
    return out
