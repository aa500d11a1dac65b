"""``model-diff status``: what git will do with checkpoints here, and why.

Reports the driver config per scope, the ``diff`` and ``merge`` attributes git resolves for
each pattern (``git check-attr``, so ordering and ``.git/info/attributes`` are accounted for),
Git LFS presence, and whether a fresh clone would silently fall back to pointer/binary diffs
(and text merges of LFS pointers) because the driver config (which is per clone or per user,
never committed) is missing.

This module must not import click or dulwich and never prints: it returns a report.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import git
from .attributes import DEFAULT_PATTERNS, DRIVER
from .cache import TEXTCONV_FORMAT_VERSION, TextconvCache, default_root
from .install import KEYS_REGEX, SCOPES


@dataclass
class Status:
    in_repo: bool
    driver: dict[str, dict[str, str]]  # scope -> key -> value
    attributes: list[tuple[str, str, str]]  # (pattern, sample path, diff attribute)
    lfs_version: str | None
    lfs_filter: bool
    lfs_patterns: list[str]
    cache_root: Path | None = None
    cache_entries: int = 0
    cache_bytes: int = 0
    git_notes_cache: bool = False  # refs/notes/textconv/model-diff exists
    warnings: list[str] = field(default_factory=list)
    #: pattern -> the merge attribute git resolves for its sample path
    merge_attributes: dict[str, str] = field(default_factory=dict)

    @property
    def driver_scopes(self) -> list[str]:
        return [s for s in SCOPES if f"diff.{DRIVER}.textconv" in self.driver.get(s, {})]

    @property
    def merge_scopes(self) -> list[str]:
        return [s for s in SCOPES if f"merge.{DRIVER}.driver" in self.driver.get(s, {})]


def sample_path(pattern: str) -> str:
    """A file name a glob matches, for ``git check-attr`` (which takes paths, not patterns)."""
    p = pattern.lstrip("/")
    p = p.replace("**/", "").replace("/**", "/x")
    p = re.sub(r"\[!?([^\]])[^\]]*\]", lambda m: "x" if m.group(0)[1] == "!" else m.group(1), p)
    return p.replace("*", "model").replace("?", "x") or "model"


def _lfs_version(cwd: Path) -> str | None:
    proc = git.run(["lfs", "version"], cwd=cwd, check=False)
    return proc.stdout.decode().strip().split(" ")[0] if proc.returncode == 0 else None


def collect(cwd: str | os.PathLike[str] | None = None, patterns: list[str] | None = None) -> Status:
    here = Path(cwd or os.getcwd())
    repo = git.Repo.find(here)
    top = Path(repo.top) if repo is not None else None
    driver: dict[str, dict[str, str]] = {}
    for scope in SCOPES:
        if scope == "local" and top is None:
            continue
        keys = git.config_keys([f"--{scope}"], KEYS_REGEX, cwd=here)
        if keys:
            driver[scope] = keys
    attrs: list[tuple[str, str, str]] = []
    merge_attrs: dict[str, str] = {}
    lfs_patterns: list[str] = []
    if top is not None:
        pats = list(patterns or DEFAULT_PATTERNS)
        samples = [sample_path(p) for p in pats]
        proc = git.run(["check-attr", "-z", "diff", "merge", "filter", "--", *samples], cwd=top)
        fields = os.fsdecode(proc.stdout).split("\0")
        values: dict[tuple[str, str], str] = {}
        for i in range(0, len(fields) - 2, 3):
            values[(fields[i], fields[i + 1])] = fields[i + 2]
        for pat, sample in zip(pats, samples, strict=True):
            attrs.append((pat, sample, values.get((sample, "diff"), "unspecified")))
            merge_attrs[pat] = values.get((sample, "merge"), "unspecified")
            if values.get((sample, "filter")) == "lfs":
                lfs_patterns.append(pat)
    lfs_filter = git.config_get([], "filter.lfs.process", cwd=here) is not None
    st = Status(
        in_repo=top is not None,
        driver=driver,
        attributes=attrs,
        lfs_version=_lfs_version(here),
        lfs_filter=lfs_filter,
        lfs_patterns=lfs_patterns,
        merge_attributes=merge_attrs,
    )
    cache = TextconvCache(default_root(here), version=TEXTCONV_FORMAT_VERSION)
    entries = cache.entries()
    st.cache_root, st.cache_entries = cache.root, len(entries)
    st.cache_bytes = sum(size for _, size, _ in entries)
    if top is not None:
        notes = git.run(
            ["rev-parse", "-q", "--verify", f"refs/notes/textconv/{DRIVER}"], cwd=top, check=False
        )
        st.git_notes_cache = notes.returncode == 0
    _diagnose(st, top)
    return st


def _diagnose(st: Status, top: Path | None) -> None:
    names_driver = [p for p, _, v in st.attributes if v == DRIVER]
    scopes = st.driver_scopes
    if names_driver and not scopes:
        st.warnings.append(
            f"attributes name diff={DRIVER} but no driver is configured: git silently falls "
            "back to binary/pointer diffs; run `model-diff install`"
        )
    merging = [p for p, v in st.merge_attributes.items() if v == DRIVER]
    if merging and not st.merge_scopes:
        st.warnings.append(
            f"attributes name merge={DRIVER} but no merge driver is configured: git falls back "
            "to a text merge (conflict markers inside Git LFS pointers); run `model-diff install`"
        )
    for pat, _, value in st.attributes:
        if value == "lfs" and scopes:
            st.warnings.append(
                f"{pat}: diff=lfs wins for these files (pointer diffs); "
                "run `model-diff install` to edit the LFS line in place"
            )
    for scope, keys in st.driver.items():
        cmd = keys.get(f"diff.{DRIVER}.textconv", "")
        m = re.search(r"--format-version=(\d+)", cmd)
        stale = not m or int(m.group(1)) != TEXTCONV_FORMAT_VERSION
        if keys.get(f"diff.{DRIVER}.cachetextconv") == "true" and stale:
            st.warnings.append(
                f"{scope}: cachetextconv is on but the command does not carry the current "
                f"output format (--format-version={TEXTCONV_FORMAT_VERSION}): git may show "
                f"stale cached lines; run `model-diff install --cachetextconv` again"
            )
        if f"diff.{DRIVER}.command" in keys:
            st.warnings.append(
                f"{scope}: the external diff command is on: `git diff` uses it, "
                "`git log -p`/`git show` use the textconv"
            )
    if top is not None and names_driver and scopes == ["local"]:
        tracked = git.run(["ls-files", "--", ".gitattributes"], cwd=top, check=False)
        if tracked.stdout.strip():
            st.warnings.append(
                "a fresh clone will show pointer/binary diffs until `model-diff install` is run "
                "there: the driver lives in .git/config, which is not cloned "
                "(or use `model-diff install --global`)"
            )


def format_status(st: Status) -> str:
    lines = ["driver config:"]
    if not st.driver:
        lines.append("  (none: git shows binary/pointer diffs for checkpoints)")
    for scope, keys in st.driver.items():
        for key, value in sorted(keys.items()):
            lines.append(f"  {scope:<6} {key} = {value}")
    if st.in_repo:
        lines.append("attributes (git check-attr diff merge):")
        width = max((len(p) for p, _, _ in st.attributes), default=0)
        for pat, sample, value in st.attributes:
            mark = "ok" if value == DRIVER else "not model-diff"
            merge = st.merge_attributes.get(pat, "unspecified")
            merge_mark = "ok" if merge == DRIVER else "not model-diff"
            lines.append(
                f"  {pat:<{width}}  {sample}: diff={value}  [{mark}]; merge={merge}  [{merge_mark}]"
            )
    else:
        lines.append("attributes: (not in a repository)")
    lfs = st.lfs_version or "not installed"
    lines.append(
        f"git-lfs: {lfs}; filter configured: {'yes' if st.lfs_filter else 'no'}"
        + (f"; LFS patterns: {' '.join(st.lfs_patterns)}" if st.lfs_patterns else "")
    )
    if st.cache_root is not None:
        lines.append(
            f"textconv cache: {st.cache_root} ({st.cache_entries} entries, "
            f"{st.cache_bytes / 2**20:.1f} MiB)"
        )
    if st.git_notes_cache:
        lines.append(
            f"git's textconv cache: refs/notes/textconv/{DRIVER} (clear: git update-ref "
            f"-d refs/notes/textconv/{DRIVER})"
        )
    lines += [f"warning: {w}" for w in st.warnings]
    return "\n".join(lines) + "\n"
