"""Issue 12, acceptance 1 and 2: every command lists the same checkpoint changes, and any
revision git accepts works in ``REV:path``.

One history, plain and Git LFS, holds every kind of change: a modified checkpoint, a replaced
training checkpoint (``ckpt/step_1000`` -> ``ckpt/step_2000``), a true rename, an added and a
deleted one, a sharded HuggingFace folder with one shard changed, a file whose name is not
UTF-8 and an upper-case extension. ``model-diff diff``, ``model-diff ci`` (JSON) and
``check --staged`` (the same change staged) must list the same pairs with the same statuses;
``git diff`` with the external driver lists git's own per-file pairs (docs/git.md says why
two of them differ).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from model_diff.gitdriver.attributes import DEFAULT_PATTERNS

from model_diff.cli import cli
from model_diff.toy import fine_tune, save_safetensors
from tests.conftest import scrubbed_env
from tests.gitdriver.history import git, init_repo, toy
from tests.model_diff.formats.factories import save_hf_dir

NON_UTF8 = os.fsdecode(b"caf\xe9.safetensors")
NON_UTF8_SHOWN = "caf\\xe9.safetensors"
Pair = tuple[str, str | None, str | None]

#: (status, old path, new path) of every checkpoint change from A to B, paths as shown.
EXPECTED: set[Pair] = {
    ("modified", "model.safetensors", "model.safetensors"),
    ("renamed", "ckpt/step_1000.safetensors", "ckpt/step_2000.safetensors"),
    ("renamed", "moved.safetensors", "archive/moved.safetensors"),
    ("removed", "gone.safetensors", None),
    ("added", None, "extra/added.safetensors"),
    ("modified", "hf", "hf"),
    ("modified", NON_UTF8_SHOWN, NON_UTF8_SHOWN),
    ("modified", "UPPER.SAFETENSORS", "UPPER.SAFETENSORS"),
}
SHARD_2 = "hf/model-00002-of-00002.safetensors"


@dataclass
class Repo:
    root: Path
    env: dict[str, str]
    a: str
    b: str
    shard1: list[str]  # the tensors of the unchanged shard


def _write_history(root: Path, env: dict[str, str], lfs: bool) -> Repo:
    init_repo(root, env, lfs=lfs)
    model, step, moved, gone, hf, odd, upper = (toy(s) for s in range(7))
    save_safetensors(root / "model.safetensors", model)
    (root / "ckpt").mkdir()
    save_safetensors(root / "ckpt" / "step_1000.safetensors", step)
    save_safetensors(root / "moved.safetensors", moved)
    save_safetensors(root / "gone.safetensors", gone)
    save_hf_dir(root / "hf", hf, shards=2)
    save_safetensors(root / NON_UTF8, odd)
    save_safetensors(root / "UPPER.SAFETENSORS", upper)
    (root / "notes.txt").write_text("a\n")
    git(root, env, "add", "-A")
    git(root, env, "commit", "-q", "-m", "A")
    a = git(root, env, "rev-parse", "HEAD").stdout.strip()

    save_safetensors(root / "model.safetensors", fine_tune(model, seed=1))
    git(root, env, "rm", "-q", "ckpt/step_1000.safetensors")
    (root / "ckpt").mkdir(exist_ok=True)
    save_safetensors(root / "ckpt" / "step_2000.safetensors", fine_tune(step, seed=2))
    (root / "archive").mkdir()
    git(root, env, "mv", "moved.safetensors", "archive/moved.safetensors")
    git(root, env, "rm", "-q", "gone.safetensors")
    (root / "extra").mkdir()
    save_safetensors(root / "extra" / "added.safetensors", toy(7))
    names = sorted(hf)
    shard1 = names[0::2]  # save_hf_dir deals sorted names out to the shards in turn
    trained = fine_tune(hf, seed=3, frozen=())
    save_hf_dir(root / "hf", {n: hf[n] if n in shard1 else trained[n] for n in names}, shards=2)
    save_safetensors(root / NON_UTF8, fine_tune(odd, seed=4))
    save_safetensors(root / "UPPER.SAFETENSORS", fine_tune(upper, seed=5))
    (root / "notes.txt").write_text("b\n")
    git(root, env, "add", "-A")
    git(root, env, "commit", "-q", "-m", "B")
    b = git(root, env, "rev-parse", "HEAD").stdout.strip()
    # Only the second shard changed; the first is the same blob at A and B.
    assert git(root, env, "diff", "--name-only", a, b, "--", "hf").stdout.split() == [SHARD_2]
    return Repo(root, env, a, b, shard1)


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "lfs"])
def repo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Repo:
    base = tmp_path_factory.mktemp("truth-lfs" if request.param else "truth-plain")
    return _write_history(base / "repo", scrubbed_env(base / "home"), request.param)


@pytest.fixture
def invoke(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Run the CLI in this process (no interpreter start-up per command) with ``env`` as the
    environment git sees and ``cwd`` as the current directory; returns (exit code, stdout)."""

    def run(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
        for key in [k for k in os.environ if k not in env]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.chdir(cwd)
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
        return result.exit_code, result.stdout

    return run


def _json(result: tuple[int, str] | subprocess.CompletedProcess[str], rc: int) -> dict:
    if isinstance(result, subprocess.CompletedProcess):
        assert result.returncode == rc, result.stderr
        return json.loads(result.stdout)
    assert result[0] == rc, result[1]
    return json.loads(result[1])


def _check_pairs(doc: dict) -> set[Pair]:
    """(status, old, new) from a check/ci JSON document (its files and its deleted list)."""
    pairs: set[Pair] = {("removed", d, None) for d in doc["deleted"]}
    for f in doc["files"]:
        old = None if f["change"] == "added" else f["old_path"] or f["path"]
        pairs.add((f["change"], old, f["path"]))
    return pairs


def _frozen(doc: dict, path: str) -> set[str]:
    (f,) = [f for f in doc["files"] if f["path"] == path]
    return {t for v in f["violations"] if v["code"] == "frozen-layers" for t in v["tensors"]}


def test_diff_and_ci_list_the_same_changes_and_judge_the_folder_whole(repo: Repo, invoke) -> None:  # type: ignore[no-untyped-def]
    """`model-diff diff A B` and `model-diff ci --base A --head B`: the same pairs and
    statuses; the sharded folder is compared whole, so its unchanged shard is frozen."""
    diff = _json(invoke(["diff", "--format", "json", repo.a, repo.b], repo.env, repo.root), 0)
    got = {(f["status"], f["old_path"], f["new_path"]) for f in diff["files"]}
    assert got == EXPECTED
    hf = next(f for f in diff["files"] if f["path"] == "hf")
    assert hf["report"]["summary"]["unchanged_parameters"] == len(repo.shard1)
    insights = {i["code"]: i for i in hf["report"]["analysis"]["insights"]}
    assert set(repo.shard1) <= set(insights["frozen-layers"]["evidence"]["tensors"])

    ci = _json(
        invoke(["ci", "--base", repo.a, "--head", repo.b, "--format", "json"], repo.env, repo.root),
        1,  # the frozen shard fails the gate
    )
    assert _check_pairs(ci) == EXPECTED
    assert _frozen(ci, "hf") == set(repo.shard1)


@pytest.fixture
def staged(repo: Repo, tmp_path: Path) -> Iterator[Path]:
    """A work tree at A with B's content staged, as pre-commit sees it before the commit."""
    wt = tmp_path / "wt"
    git(repo.root, repo.env, "worktree", "add", "-q", "--detach", str(wt), repo.a)
    git(wt, repo.env, "read-tree", "-m", "-u", repo.a, repo.b)
    yield wt
    git(repo.root, repo.env, "worktree", "remove", "--force", str(wt))


def test_check_staged_lists_the_same_changes(repo: Repo, staged: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    """`check --staged` for A -> B staged: the pairs of `diff` and `ci`, the folder whole."""
    doc = _json(invoke(["check", "--staged", "--format", "json"], repo.env, staged), 1)
    assert _check_pairs(doc) == EXPECTED
    assert _frozen(doc, "hf") == set(repo.shard1)
    # pre-commit passes the changed files themselves; a shard stands for its folder
    doc = _json(invoke(["check", "--staged", "--format", "json", SHARD_2], repo.env, staged), 1)
    assert [(f["path"], f["change"]) for f in doc["files"]] == [("hf", "modified")]


_HEADER = re.compile(r"^diff --git a/(.*) b/(.*)$")


def _ext_diff_pairs(out: str) -> set[Pair]:
    """(status, old, new) from the headers the external diff driver printed."""
    pairs: set[Pair] = set()
    lines = out.splitlines()
    for i, line in enumerate(lines):
        m = _HEADER.match(line)
        if not m or not lines[i + 1 :] or lines[i + 1].startswith("index "):
            if m and m.group(1) == m.group(2):
                pairs.add(("modified", m.group(1), m.group(2)))
            continue
        nxt = lines[i + 1]
        if nxt.startswith("new file"):
            pairs.add(("added", None, m.group(2)))
        elif nxt.startswith("deleted file"):
            pairs.add(("removed", m.group(1), None))
        elif nxt.startswith("similarity index"):
            pairs.add(("renamed", m.group(1), m.group(2)))
    return pairs


@pytest.mark.slow  # git starts the driver once per checkpoint file: 8 interpreters
@pytest.mark.parametrize("repo", [True], ids=["lfs"], indirect=True)
def test_git_diff_with_the_external_driver_lists_gits_per_file_pairs(repo: Repo) -> None:
    """`git diff A B` with the driver `install --external` registers (LFS history): the same
    pairs, except where git hands the driver one file at a time (docs/git.md): the replaced
    checkpoint is a removal plus an addition, and the folder is its changed shard."""
    from model_diff.gitdriver.install import driver_config

    config = driver_config(external=True, cachetextconv=False)
    env = dict(repo.env, GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="diff.model-diff.command")
    env["GIT_CONFIG_VALUE_0"] = config["diff.model-diff.command"]
    (repo.root / ".git" / "info" / "attributes").write_text(
        "".join(f"{p} diff=model-diff\n" for p in DEFAULT_PATTERNS)
    )
    try:
        proc = git(repo.root, env, "diff", repo.a, repo.b)
    finally:
        (repo.root / ".git" / "info" / "attributes").unlink()
    got = {
        p
        for p in _ext_diff_pairs(proc.stdout)
        if (p[2] or p[1] or "").lower().endswith("safetensors")
    }
    expected = EXPECTED - {
        ("renamed", "ckpt/step_1000.safetensors", "ckpt/step_2000.safetensors"),
        ("modified", "hf", "hf"),
    }
    expected |= {
        ("removed", "ckpt/step_1000.safetensors", None),
        ("added", None, "ckpt/step_2000.safetensors"),
        ("modified", SHARD_2, SHARD_2),
    }
    assert got == expected
    assert "model-diff: error" not in proc.stdout


# -- acceptance 2: REV:path with any revision git accepts ------------------------------------


@pytest.fixture(scope="module")
def branches(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, str], list[dict[str, np.ndarray]]]:
    """main: v0 (tag v0) -> v1 -> v2; feature forks at v1 and adds v3; main checked out last."""
    base = tmp_path_factory.mktemp("revs")
    root, env = base / "repo", scrubbed_env(base / "home")
    init_repo(root, env, lfs=True)
    versions = [toy(0)]
    for seed in (1, 2, 3):
        versions.append(fine_tune(versions[-1], seed=seed))
    for i in (0, 1):
        save_safetensors(root / "m.safetensors", versions[i])
        git(root, env, "add", "-A")
        git(root, env, "commit", "-q", "-m", f"v{i}")
    git(root, env, "tag", "v0", "HEAD~1")
    git(root, env, "checkout", "-q", "-b", "feature")
    save_safetensors(root / "m.safetensors", versions[3])
    git(root, env, "commit", "-q", "-am", "v3")
    git(root, env, "checkout", "-q", "main")
    save_safetensors(root / "m.safetensors", versions[2])
    git(root, env, "commit", "-q", "-am", "v2")
    return root, env, versions


def test_rev_path_accepts_any_revision_git_accepts(
    branches: tuple[Path, dict[str, str], list[dict[str, np.ndarray]]],
    tmp_path: Path,
    invoke,  # type: ignore[no-untyped-def]
) -> None:
    """A 7-character sha, a tag, HEAD~2, @{-1} and main...feature (the merge base) name the
    commits git names, for compare, check, diff and timeline alike."""
    root, env, versions = branches
    short = git(root, env, "rev-parse", "--short=7", "HEAD~1").stdout.strip()
    assert len(short) == 7
    files = []
    for i, v in enumerate(versions):
        files.append(tmp_path / f"v{i}.safetensors")
        save_safetensors(files[-1], v)
    for spec, version in [
        (f"{short}:m.safetensors", 1),
        ("v0:m.safetensors", 0),
        ("HEAD~2:m.safetensors", 0),
        ("@{-1}:m.safetensors", 3),  # the branch checked out before main
        ("main...feature:m.safetensors", 1),  # where feature forked
    ]:
        summary = _json(
            invoke(["compare", spec, str(files[version]), "--format", "json"], env, root), 0
        )["summary"]
        assert summary["modified_parameters"] == 0, spec
        assert summary["unchanged_parameters"] == len(versions[0]), spec
    rc, out = invoke(
        ["check", "--format", "json", f"{short}:m.safetensors", "m.safetensors"], env, root
    )
    (checked,) = json.loads(out)["files"]
    assert rc in (0, 1) and checked["error"] is None and checked["mode"] == "diff"
    doc = _json(invoke(["diff", "--format", "json", short, "HEAD"], env, root), 0)
    assert [(f["path"], f["status"]) for f in doc["files"]] == [("m.safetensors", "modified")]
    rc, out = invoke(
        ["timeline", "v0:m.safetensors", f"{short}:m.safetensors", "m.safetensors"], env, root
    )
    assert rc == 0 and out.count("\n") > 3
