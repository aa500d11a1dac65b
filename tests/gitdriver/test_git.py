"""gitdriver.git against real git repos: changed checkpoints, REV:path, and `model-diff diff`."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from model_diff.gitdriver.git import Change, Repo
from model_diff.gitdriver.spec import open_spec, split_spec

from model_diff.checkpoint import Checkpoint, from_arrays
from model_diff.cli import cli
from model_diff.diff import DiffConfig, ModelDiff
from model_diff.errors import CheckpointError, GitError, LFSObjectMissingError, ModelDiffError
from model_diff.toy import save_safetensors
from tests.conftest import run_model_diff, scrubbed_env
from tests.gitdriver.history import History, build_history, git, init_repo, toy


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "lfs"])
def history(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> History:
    base = tmp_path_factory.mktemp("rev-lfs" if request.param else "rev-plain")
    return build_history(base / "repo", scrubbed_env(base / "home"), lfs=request.param)


EXPECTED = [
    Change("renamed", "moved.safetensors", "ckpt/renamed.safetensors", 100),
    Change("modified", "model.safetensors", "model.safetensors"),
    Change("added", None, "new.safetensors"),
    Change("removed", "old.safetensors", None),
]


def changed_checkpoints(
    rev1: str, rev2: str | None = None, pathspecs: list[str] | None = None, *, cwd: str
) -> list[Change]:
    return Repo.discover(cwd).changes(rev1, rev2, pathspecs or [])


def test_changes_between_revisions_list_each_kind_and_skip_other_files(history: History) -> None:
    """HEAD~2..HEAD: one rename, one modification, one add, one removal; notes.txt ignored."""
    assert changed_checkpoints("HEAD~2", "HEAD", cwd=str(history.root)) == EXPECTED


def test_pathspecs_are_relative_to_the_callers_directory(history: History) -> None:
    """A directory pathspec from a subdirectory and a glob select only matching changes."""
    in_sub = changed_checkpoints("HEAD~2", "HEAD", ["."], cwd=str(history.root / "ckpt"))
    assert [c.path for c in in_sub] == ["ckpt/renamed.safetensors"]
    globbed = changed_checkpoints("HEAD~2", "HEAD", ["*ew.safetensors"], cwd=str(history.root))
    assert [c.path for c in globbed] == ["new.safetensors"]


def test_lfs_objects_are_opened_where_they_lie(
    history: History, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An LFS file at a revision is read from the store object, never copied to a temporary
    file; a plain blob is streamed into one that goes when the checkpoint closes."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    repo = Repo.discover(history.root)
    with repo.open("HEAD", "model.safetensors") as ckpt:
        assert ckpt.path == "HEAD:model.safetensors"
        assert _same_weights(ckpt, history.model[2])
        assert len(list(tmp_path.iterdir())) == (0 if history.lfs else 1)
    assert list(tmp_path.iterdir()) == []


def test_unknown_revision_and_missing_path_are_typed_errors_with_fixes(history: History) -> None:
    """Each failure names what was asked and the command that shows what exists."""
    repo = Repo.discover(history.root)
    with pytest.raises(GitError, match=r"unknown revision 'HEAD~9'.*git log"):
        repo.resolve("HEAD~9")
    with pytest.raises(GitError, match=r"'absent.safetensors' does not exist in HEAD.*ls-tree"):
        repo.open("HEAD", "absent.safetensors")
    with pytest.raises(ModelDiffError, match="HEAD:ckpt: is a directory, not a model folder"):
        repo.open("HEAD", "ckpt")


def test_outside_a_repository_is_a_typed_error(tmp_path: Path) -> None:
    """Repo.discover outside any repository says so and how to fix it."""
    with pytest.raises(GitError, match=r"not inside a git work tree.*git init"):
        Repo.discover(tmp_path)


def test_merge_base_of_two_branches(tmp_path: Path) -> None:
    """merge_base finds the fork point of two branches, as `git merge-base` does."""
    env = scrubbed_env(tmp_path / "home")
    root = tmp_path / "repo"
    init_repo(root, env, lfs=False)
    (root / "a.txt").write_text("a\n")
    git(root, env, "add", "-A")
    git(root, env, "commit", "-q", "-m", "base")
    git(root, env, "checkout", "-q", "-b", "topic")
    (root / "b.txt").write_text("b\n")
    git(root, env, "add", "-A")
    git(root, env, "commit", "-q", "-m", "topic")
    git(root, env, "checkout", "-q", "main")
    (root / "c.txt").write_text("c\n")
    git(root, env, "add", "-A")
    git(root, env, "commit", "-q", "-m", "main")
    expected = git(root, env, "merge-base", "main", "topic").stdout.strip()
    repo = Repo.discover(root)
    assert repo.merge_base("main", "topic") == expected
    assert repo.merge_base("main", "topic") != git(root, env, "rev-parse", "main").stdout.strip()
    assert repo.resolve("main...topic") == expected


@pytest.mark.parametrize("lfs", [False, True], ids=["plain", "lfs"])
def test_worktree_side_sees_edits_deletions_renames_and_new_files(
    tmp_path: Path, lfs: bool
) -> None:
    """rev2=None compares with the files on disk, as a pre-commit hook sees them."""
    env = scrubbed_env(tmp_path / "home")
    root = tmp_path / "repo"
    init_repo(root, env, lfs=lfs)
    for name, seed in [
        ("a.safetensors", 0),
        ("b.safetensors", 1),
        ("c.safetensors", 2),
        ("same.safetensors", 3),
    ]:
        save_safetensors(root / name, toy(seed))
    git(root, env, "add", "-A")
    git(root, env, "commit", "-q", "-m", "c0")
    assert changed_checkpoints("HEAD", cwd=str(root)) == []
    save_safetensors(root / "a.safetensors", toy(7))  # same size, new content
    (root / "b.safetensors").unlink()
    git(root, env, "mv", "c.safetensors", "d.safetensors")
    save_safetensors(root / "e.safetensors", toy(8))
    git(root, env, "add", "e.safetensors")
    save_safetensors(root / "untracked.safetensors", toy(9))
    assert changed_checkpoints("HEAD", cwd=str(root)) == [
        Change("modified", "a.safetensors", "a.safetensors"),
        Change("removed", "b.safetensors", None),
        Change("renamed", "c.safetensors", "d.safetensors", 100),
        Change("added", None, "e.safetensors"),
    ]


def test_an_existing_path_is_never_read_as_a_revision(tmp_path: Path) -> None:
    """A file whose name contains ':' wins over the REV:path reading."""
    odd = tmp_path / "HEAD:model.safetensors"
    odd.write_bytes(b"x")
    assert split_spec(str(odd)) is None
    assert split_spec("HEAD~2:ckpt/a:b.safetensors") == ("HEAD~2", "ckpt/a:b.safetensors")
    assert split_spec("model.safetensors") is None


# -- opening REV:path -------------------------------------------------------------------------


def _same_weights(ckpt: Checkpoint, arrays: dict[str, np.ndarray]) -> bool:
    return set(ckpt.tensors) == set(arrays) and all(
        np.array_equal(ckpt[n].array().reshape(a.shape), a) for n, a in arrays.items()
    )


def test_open_spec_reads_each_revisions_weights(
    history: History, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """REV:path gives that commit's tensors (LFS from the store), named by the spec; closing
    it leaves no temporary file behind."""
    monkeypatch.chdir(history.root / "ckpt")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for spec, arrays in [
        ("HEAD~2:model.safetensors", history.model[0]),
        ("HEAD~1:../model.safetensors", history.model[1]),
        ("HEAD:ckpt/renamed.safetensors", history.moved),
        ("HEAD~2:old.safetensors", history.old),
    ]:
        with open_spec(spec) as ckpt:
            assert ckpt.path == spec and ckpt.format == "safetensors"
            assert _same_weights(ckpt, arrays)
    assert list(tmp_path.iterdir()) == []


def test_missing_lfs_object_names_the_oid_and_the_fetch(
    history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An LFS object absent from the store is a typed error that says `git lfs fetch`."""
    monkeypatch.chdir(history.root)
    if not history.lfs:
        with open_spec("HEAD~1:model.safetensors") as ckpt:  # plain blobs need no store
            assert _same_weights(ckpt, history.model[1])
        return
    pointer = git(
        history.root, scrubbed_env(history.root / "h"), "show", "HEAD~1:model.safetensors"
    )
    oid = pointer.stdout.split("oid sha256:")[1].split()[0]
    obj = Path(history.root / ".git/lfs/objects" / oid[:2] / oid[2:4] / oid)
    hidden = obj.with_name("hidden")
    obj.rename(hidden)
    try:
        with pytest.raises(
            LFSObjectMissingError,
            match=(rf"HEAD~1:model.safetensors: .*{oid[:12]}.*git lfs fetch"),
        ):
            open_spec("HEAD~1:model.safetensors")
    finally:
        hidden.rename(obj)


@pytest.mark.parametrize("history", [True], ids=["lfs"], indirect=True)
def test_lfs_object_of_the_wrong_size_is_corrupt_for_rev_paths_too(
    history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store object whose size disagrees with its pointer: the one verdict formats.lfs
    gives (a corrupt store), for REV:path as for a pointer on disk."""
    monkeypatch.chdir(history.root)
    pointer = git(history.root, scrubbed_env(history.root / "h"), "show", "HEAD:model.safetensors")
    oid = pointer.stdout.split("oid sha256:")[1].split()[0]
    obj = Path(history.root / ".git/lfs/objects" / oid[:2] / oid[2:4] / oid)
    data = obj.read_bytes()
    obj.chmod(0o644)
    obj.write_bytes(data + b"x")
    try:
        with pytest.raises(CheckpointError, match=r"HEAD:model.safetensors: .*corrupt LFS store"):
            open_spec("HEAD:model.safetensors")
    finally:
        obj.write_bytes(data)


def test_folder_and_index_specs(
    tmp_path: Path, clean_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """REV:folder opens a HuggingFace directory as committed; :path reads the staged file."""
    root = tmp_path / "repo"
    init_repo(root, clean_env, lfs=False)
    (root / "hf").mkdir()
    (root / "hf" / "config.json").write_text('{"model_type": "llama"}')
    save_safetensors(root / "hf" / "model.safetensors", toy(0))
    git(root, clean_env, "add", "-A")
    git(root, clean_env, "commit", "-q", "-m", "c0")
    save_safetensors(root / "hf" / "model.safetensors", toy(1))
    git(root, clean_env, "add", "-A")
    save_safetensors(root / "hf" / "model.safetensors", toy(2))  # unstaged on top
    monkeypatch.chdir(root)
    with open_spec("HEAD:hf") as ckpt:
        assert ckpt.path == "HEAD:hf" and ckpt.config == {"model_type": "llama"}
        assert _same_weights(ckpt, toy(0))
    with open_spec(":hf/model.safetensors") as ckpt:
        assert _same_weights(ckpt, toy(1))
    with pytest.raises(GitError, match="not in the index"):
        open_spec(":hf/absent.safetensors")


# -- model-diff diff / compare on revisions ----------------------------------------------------


def _invoke(args: list[str]) -> Result:
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_diff_command_lists_added_removed_renamed_and_modified(
    history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acceptance 6: `model-diff diff HEAD~2 HEAD`, with and without LFS."""
    monkeypatch.chdir(history.root)
    out = _invoke(["diff", "HEAD~2", "HEAD"]).stdout
    n = len(history.new)
    assert out.startswith("model-diff HEAD~2..HEAD\n")
    assert (
        "=== ckpt/renamed.safetensors ===\nrenamed from moved.safetensors "
        "(similarity 100%): content identical"
    ) in out
    assert "=== model.safetensors ===\nmodified\n" in out
    assert "HEAD~2:model.safetensors -> HEAD:model.safetensors" in out
    assert f"=== new.safetensors ===\nadded: {n} tensors" in out
    assert f"=== old.safetensors ===\nremoved: {n} tensors" in out
    assert "notes.txt" not in out


def test_diff_command_json_carries_each_files_report(
    history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JSON: one entry per file, the modified pair's numbers equal a direct engine run."""
    monkeypatch.chdir(history.root)
    doc = json.loads(_invoke(["diff", "--format", "json", "HEAD~2", "HEAD"]).stdout)
    assert doc["base"] == "HEAD~2" and doc["head"] == "HEAD"
    assert [(f["path"], f["status"]) for f in doc["files"]] == [
        ("ckpt/renamed.safetensors", "renamed"),
        ("model.safetensors", "modified"),
        ("new.safetensors", "added"),
        ("old.safetensors", "removed"),
    ]
    _, expected = ModelDiff(DiffConfig(include_unchanged=True)).diff(
        from_arrays(history.model[0]), from_arrays(history.model[2])
    )
    got = doc["files"][1]["report"]["summary"]
    assert got["modified_parameters"] == expected.modified_parameters
    assert got["avg_relative_change"] == pytest.approx(expected.avg_relative_change, rel=1e-12)


def test_diff_command_markdown_and_html(history: History, monkeypatch: pytest.MonkeyPatch) -> None:
    """Markdown lists every file in a table; HTML embeds each report escaped in a frame."""
    monkeypatch.chdir(history.root)
    md = _invoke(["diff", "--format", "markdown", "HEAD~2", "HEAD"]).stdout
    assert f"| new.safetensors | added: {len(history.new)} tensors" in md
    assert "## model.safetensors" in md
    page = _invoke(["diff", "--format", "html", "HEAD~2", "HEAD"]).stdout
    assert page.count("<iframe") == 1 and 'srcdoc="&lt;!DOCTYPE html&gt;' in page
    assert "<script" not in page  # the embedded report's markup is escaped, not live
    # its scripts run in an opaque origin: never allow-same-origin next to allow-scripts
    assert 'sandbox="allow-scripts"' in page and "allow-same-origin" not in page


def test_diff_command_pathspecs_and_the_working_tree(
    history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without REV2 the working tree is the new side; `--` and bare paths limit the files."""
    monkeypatch.chdir(history.root)
    out = _invoke(["diff", "HEAD~2", "--", "ckpt"]).stdout
    assert out.startswith("model-diff HEAD~2 vs working tree\n")
    assert [ln for ln in out.splitlines() if ln.startswith("===")] == [
        "=== ckpt/renamed.safetensors ==="
    ]
    out = _invoke(["diff", "HEAD~1", "new.safetensors"]).stdout
    assert [ln for ln in out.splitlines() if ln.startswith("===")] == ["=== new.safetensors ==="]


@pytest.mark.parametrize("history", [False], ids=["plain"], indirect=True)
def test_diff_and_compare_errors_exit_2_with_one_line(
    history: History, clean_env: dict[str, str]
) -> None:
    """An unknown revision or path is one line on stderr naming it, exit 2, no stdout."""
    proc = run_model_diff(["diff", "nope", "HEAD"], clean_env, cwd=history.root)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.startswith("model-diff: error: unknown revision 'nope'")
    assert proc.stderr.count("\n") == 1
    proc = run_model_diff(
        ["compare", "HEAD:absent.safetensors", "model.safetensors"], clean_env, cwd=history.root
    )
    assert (proc.returncode, proc.stdout) == (2, "")
    assert "path 'absent.safetensors' does not exist in HEAD" in proc.stderr


@pytest.mark.parametrize("history", [True], ids=["lfs"], indirect=True)
def test_compare_reads_rev_paths_like_files(
    history: History, clean_env: dict[str, str], tmp_path: Path
) -> None:
    """`compare REV:path path` and `compare REV1:path REV2:path` equal comparing the files."""
    old, new = tmp_path / "old.safetensors", tmp_path / "new.safetensors"
    save_safetensors(old, history.model[0])
    save_safetensors(new, history.model[2])

    def summary(a: str, b: str) -> dict[str, object]:
        proc = run_model_diff(["compare", a, b, "--format", "json"], clean_env, cwd=history.root)
        assert proc.returncode == 0, proc.stderr
        s = json.loads(proc.stdout)["summary"]
        return {k: v for k, v in s.items() if k not in ("old_path", "new_path")}

    files = summary(str(old), str(new))
    assert summary("HEAD~2:model.safetensors", "model.safetensors") == files
    assert summary("HEAD~2:model.safetensors", "HEAD:model.safetensors") == files


def test_diff_command_reads_git_ranges(history: History, monkeypatch: pytest.MonkeyPatch) -> None:
    """`A..B`, `A..` and `A...B` (from the merge-base, as for a pull request) work as in git."""
    monkeypatch.chdir(history.root)

    def files(args: list[str]) -> list[tuple[str, str]]:
        doc = json.loads(_invoke(["diff", "--format", "json", *args]).stdout)
        return [(f["path"], f["status"]) for f in doc["files"]]

    expected = files(["HEAD~2", "HEAD"])
    assert files(["HEAD~2..HEAD"]) == expected
    assert files(["HEAD~2.."]) == expected
    assert files(["HEAD~2...HEAD"]) == expected  # HEAD~2 is its own merge-base with HEAD
    assert files(["HEAD...HEAD~2"]) == []  # nothing on HEAD~2's side since the fork
    assert _invoke(["diff", "HEAD~1..HEAD"]).stdout.startswith("model-diff HEAD~1..HEAD\n")


@pytest.mark.parametrize("lfs", [False, True], ids=["plain", "lfs"])
def test_renamed_and_edited_files_pair_as_git_pairs_them(
    tmp_path: Path, clean_env: dict[str, str], lfs: bool
) -> None:
    """A rename with a small edit is a rename (<100%) on plain blobs and, as `git diff -M`
    says too, a removal plus an addition when LFS stores pointers."""
    root = tmp_path / "repo"
    init_repo(root, clean_env, lfs=lfs)
    weights = toy(0)
    save_safetensors(root / "a.safetensors", weights)
    git(root, clean_env, "add", "-A")
    git(root, clean_env, "commit", "-q", "-m", "c0")
    git(root, clean_env, "mv", "a.safetensors", "b.safetensors")
    weights["model.norm.weight"] = weights["model.norm.weight"] + 0.5
    save_safetensors(root / "b.safetensors", weights)
    git(root, clean_env, "add", "-A")
    git(root, clean_env, "commit", "-q", "-m", "c1")
    got = changed_checkpoints("HEAD~1", "HEAD", cwd=str(root))
    status = git(root, clean_env, "diff", "-M", "--name-status", "HEAD~1", "HEAD").stdout
    if lfs:
        assert status.split() == ["D", "a.safetensors", "A", "b.safetensors"]
        assert [(c.status, c.path) for c in got] == [
            ("removed", "a.safetensors"),
            ("added", "b.safetensors"),
        ]
    else:
        assert status.startswith("R") and status.split()[1:] == ["a.safetensors", "b.safetensors"]
        assert len(got) == 1 and (got[0].status, got[0].old_path, got[0].new_path) == (
            "renamed",
            "a.safetensors",
            "b.safetensors",
        )
        assert got[0].similarity is not None and 50 <= got[0].similarity < 100


# -- the replaced-checkpoint rule --------------------------------------------------------------


def _added(path: str, folder: bool = False) -> Change:
    return Change("added", None, path, folder=folder)


def _removed(path: str, folder: bool = False) -> Change:
    return Change("removed", path, None, folder=folder)


def test_pair_replaced_pairs_names_that_differ_only_in_numbers() -> None:
    """step_1000 -> step_2000 in one directory (any letter case, files or folders) is one
    rename with no similarity; other changes stay as they are, in order."""
    from model_diff.gitdriver.git import pair_replaced

    listed = [
        _removed("ckpt/step_1000.safetensors"),
        _added("ckpt/step_2000.SAFETENSORS"),
        _removed("runs/checkpoint-500", folder=True),
        _added("runs/checkpoint-1000", folder=True),
        Change("modified", "model.pt", "model.pt"),
    ]
    assert pair_replaced(listed) == [
        Change("renamed", "ckpt/step_1000.safetensors", "ckpt/step_2000.SAFETENSORS"),
        Change("renamed", "runs/checkpoint-500", "runs/checkpoint-1000", folder=True),
        Change("modified", "model.pt", "model.pt"),
    ]


@pytest.mark.parametrize(
    "listed",
    [
        [_removed("old.safetensors"), _added("new.safetensors")],  # names differ in letters
        [_removed("a/step_1.safetensors"), _added("b/step_2.safetensors")],  # two directories
        [_removed("step_1.safetensors"), _added("step_2.pt")],  # two formats
        [_removed("step_1", folder=True), _added("step_2.safetensors")],  # folder and file
        # ambiguous: which of the two replaced step_1?
        [_removed("step_1.pt"), _added("step_2.pt"), _added("step_3.pt")],
    ],
)
def test_pair_replaced_leaves_everything_else_alone(listed: list[Change]) -> None:
    """No pair unless exactly one removal and one addition share directory and name shape."""
    from model_diff.gitdriver.git import pair_replaced

    assert pair_replaced(listed) == listed


def test_dir_diff_folders_apply_the_same_rule(tmp_path: Path) -> None:
    """`git difftool --dir-diff` hands over two folders: a replaced checkpoint in them is
    paired (and compared) as `model-diff diff` pairs it."""
    from model_diff.gitdriver.difftool import dir_pairs

    left, right = tmp_path / "left", tmp_path / "right"
    (left / "ckpt").mkdir(parents=True)
    (right / "ckpt").mkdir(parents=True)
    save_safetensors(left / "ckpt" / "step_1000.safetensors", toy(0))
    save_safetensors(right / "ckpt" / "step_2000.safetensors", toy(1))
    save_safetensors(right / "other.safetensors", toy(2))
    pairs = dir_pairs(str(left), str(right))
    assert [(p.status, p.old_path, p.new_path) for p in pairs] == [
        ("renamed", "ckpt/step_1000.safetensors", "ckpt/step_2000.safetensors"),
        ("added", None, "other.safetensors"),
    ]
    assert pairs[0].old == str(left / "ckpt" / "step_1000.safetensors")


def test_a_cli_run_on_revisions_leaves_no_temporary_folder(
    history: History, tmp_path: Path
) -> None:
    """`model-diff compare REV:path REV:path` in its own process (which exits without tearing
    the interpreter down) delivers its whole report and removes what it checked out."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(scrubbed_env(tmp_path / "home"), TMPDIR=str(tmp))
    args = ["compare", "HEAD~2:model.safetensors", "HEAD:model.safetensors", "--format", "json"]
    r = run_model_diff(args, env, cwd=history.root)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["summary"]["total_parameters"] > 0
    assert list(tmp.iterdir()) == []
