"""``model-diff timeline --git [REV_RANGE] -- PATH`` over a real git + git-lfs history
(issue 16, acceptance 2) and ``Repo.history`` under it.

One LFS repository per module: the training run of ``tests.model_diff.training_run``
committed as six versions of ``ckpt/model.safetensors`` (with an unrelated commit between
them); tests that break it work on a copy.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from model_diff.gitdriver.git import Repo

from model_diff.cli import cli
from model_diff.errors import GitError
from model_diff.toy import save_safetensors
from tests.conftest import run_model_diff, scrubbed_env
from tests.gitdriver.lfsrepo import git, init_lfs_repo, small_model
from tests.model_diff.training_run import GLOBAL_STEPS, save_run, training_states

PATH = "ckpt/model.safetensors"


@dataclass
class Run:
    root: Path
    env: dict[str, str]
    shas: list[str]  # the six commits that changed PATH, oldest first
    folder_json: dict  # type: ignore[type-arg]  # `timeline DIR --format json` of the same run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    base = tmp_path_factory.mktemp("timeline-git")
    env = scrubbed_env(base / "home")
    root = base / "repo"
    init_lfs_repo(root, env)
    (root / "ckpt").mkdir()
    states = training_states()
    shas = []
    for i, (gs, state) in enumerate(zip(GLOBAL_STEPS, states, strict=True)):
        save_safetensors(root / PATH, state, {"format": "pt", "global_step": str(gs)})
        git(["add", "-A"], root, env)
        git(["commit", "-q", "-m", f"train: global step {gs}"], root, env)
        shas.append(git(["rev-parse", "HEAD"], root, env).stdout.strip())
        if i == 2:  # a commit that does not touch PATH is not a step
            (root / "notes.txt").write_text("lr spike next\n")
            git(["add", "notes.txt"], root, env)
            git(["commit", "-q", "-m", "notes"], root, env)
    assert git(["lfs", "ls-files"], root, env).stdout.count("model.safetensors") == 1
    folder = base / "folder"
    save_run(folder, states)
    res = CliRunner().invoke(cli, ["timeline", str(folder), "--format", "json"])
    assert res.exit_code == 0, res.stderr
    return Run(root, env, shas, json.loads(res.stdout))


def _timeline(root: Path, env: dict[str, str], *args: str) -> dict:  # type: ignore[type-arg]
    proc = run_model_diff(["timeline", "--format", "json", *args], env, cwd=root)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def _numbers(data: dict) -> list:  # type: ignore[type-arg]
    """What must agree between two timelines of the same weights: per-step patterns,
    insight codes and movers, every row's values, trends and events."""
    return [
        [
            (s["change_pattern"], [i["code"] for i in s["insights"]], s["movers"])
            for s in data["steps"]
        ],
        [(r["label"], r["changes"], r["frozen"], r["nonfinite"], r["trend"]) for r in data["rows"]],
        data["layer_types"],
        [(e["kind"], e["step"], e["rows"], e["ratio"]) for e in data["events"]],
    ]


def test_git_history_gives_the_folder_runs_steps_and_numbers(run: Run) -> None:
    """timeline --git -- PATH: the six commits that changed PATH, oldest first, LFS objects
    from the store; the same steps and numbers as the same run read from a folder."""
    data = _timeline(run.root, run.env, "--git", "--", PATH)
    assert data["order"] == "git"
    assert [c for c in data["checkpoints"]] == [s[:7] for s in run.shas]
    assert data["details"] == [f"train: global step {gs}" for gs in GLOBAL_STEPS]
    assert [(s["from"], s["to"]) for s in data["steps"]] == [
        (a[:7], b[:7]) for a, b in zip(run.shas, run.shas[1:], strict=False)
    ]
    assert _numbers(data) == _numbers(run.folder_json)
    assert any("jumped at step 3" in e["text"] for e in data["events"])


def test_a_range_narrows_the_history_and_paths_are_relative_to_the_caller(run: Run) -> None:
    """REV_RANGE as git log reads it; PATH relative to the current directory."""
    data = _timeline(
        run.root / "ckpt", run.env, "--git", f"{run.shas[2]}..HEAD", "--", "model.safetensors"
    )
    assert data["checkpoints"] == [s[:7] for s in run.shas[3:]]
    assert len(data["steps"]) == 2


def test_an_unfetched_object_is_a_gap_and_the_command_exits_0(run: Run, tmp_path: Path) -> None:
    """The LFS object of the fourth version deleted from .git/lfs/objects: step 3 is a gap
    naming the object, step 4 compares the third and fifth versions, exit 0; the other steps
    keep their numbers."""
    copy = tmp_path / "copy"
    shutil.copytree(run.root, copy, symlinks=True)
    pointer = git(["show", f"{run.shas[3]}:{PATH}"], copy, run.env).stdout
    oid = pointer.split("oid sha256:")[1].split()[0]
    (copy / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid).unlink()
    data = _timeline(copy, run.env, "--git", "--", PATH)
    steps = data["steps"]
    assert steps[2]["gap"] == (
        f"{run.shas[3][:7]}: Git LFS object {oid[:12]} "
        f"({int(pointer.split('size ')[1].split()[0]):,} bytes) not fetched"
    )
    assert (steps[3]["from"], steps[3]["to"], steps[3]["spans"]) == (
        run.shas[2][:7],
        run.shas[4][:7],
        2,
    )
    full = run.folder_json["rows"]
    for r, f in zip(data["rows"], full, strict=True):
        assert [r["changes"][k] for k in (0, 1, 4)] == [f["changes"][k] for k in (0, 1, 4)]
        assert r["changes"][2] is None
    proc = run_model_diff(["timeline", "--git", "--", PATH], run.env, cwd=copy)
    assert proc.returncode == 0, proc.stderr
    assert "step 3: no comparison" in proc.stdout and "not fetched" in proc.stdout


def test_history_marks_deletions_and_the_timeline_bridges_them(tmp_path: Path) -> None:
    """A commit that deleted PATH is listed (present False) and is a gap; re-added, the next
    step compares the versions on either side of the deletion."""
    env = scrubbed_env(tmp_path / "home")
    root = tmp_path / "plain"
    root.mkdir()
    git(["init", "-q", "-b", "main"], root, env)
    for msg, seed in (("v0", 0), ("v1", 1), ("delete", None), ("v2", 2)):
        if seed is None:
            (root / "m.safetensors").unlink()
        else:
            save_safetensors(root / "m.safetensors", small_model(seed))
        git(["add", "-A"], root, env)
        git(["commit", "-q", "-m", msg], root, env)
    revs = Repo.discover(root).history("m.safetensors")
    assert [(r.subject, r.present, r.path) for r in revs] == [
        ("v0", True, "m.safetensors"),
        ("v1", True, "m.safetensors"),
        ("delete", False, "m.safetensors"),
        ("v2", True, "m.safetensors"),
    ]
    data = _timeline(root, env, "--git", "--", "m.safetensors")
    assert data["steps"][1]["gap"] == f"{revs[2].short}: m.safetensors deleted in this commit"
    assert data["steps"][2]["from"] == revs[1].short and data["steps"][2]["spans"] == 2
    assert Repo.discover(root).history("m.safetensors", "HEAD~1..HEAD") == revs[3:]
    with pytest.raises(GitError, match=r"unknown revision or range 'nope\.\.HEAD'"):
        Repo.discover(root).history("m.safetensors", "nope..HEAD")
    proc = run_model_diff(["timeline", "--git", "--", "absent.safetensors"], env, cwd=root)
    assert proc.returncode == 2 and "no commit in HEAD changed absent.safetensors" in proc.stderr
