"""The merge driver and mergetool against real git and git-lfs (issue 15, acceptance 1 and 2).

Every repository is built in tmp_path with a scrubbed environment; `model-diff install` (a
subprocess, like a user) registers the driver, and real `git merge` / `git rebase` /
`git cherry-pick` / `git mergetool` run it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from model_diff.gitdriver import mergedriver

from model_diff.formats import lfs, open_checkpoint
from model_diff.toy import save_safetensors, toy_transformer
from tests.conftest import run_model_diff
from tests.gitdriver.lfsrepo import git

FILE = "model.safetensors"
HEAD = ("lm_head.weight", "model.norm.weight")
SHARED = "model.layers.0.self_attn.q_proj.weight"

Weights = dict[str, np.ndarray]


def _in_layers_3_to_5(name: str) -> bool:
    return any(name.startswith(f"model.layers.{i}.") for i in (3, 4, 5))


def changed(sd: Weights, pick: Callable[[str], bool], delta: float) -> Weights:
    return {n: (a + np.float32(delta) if pick(n) else a) for n, a in sd.items()}


def read(path: Path) -> Weights:
    with open_checkpoint(path) as c:
        return {n: np.array(c.tensors[n].array()).reshape(c.tensors[n].shape) for n in c.tensors}


def same_bytes(a: Weights, b: Weights) -> bool:
    return sorted(a) == sorted(b) and all(
        a[n].dtype == b[n].dtype and a[n].tobytes() == b[n].tobytes() for n in a
    )


@dataclass
class Repo:
    root: Path
    env: dict[str, str]
    base: Weights
    a: Weights
    b: Weights

    def git(self, *args: str, check: bool = True) -> tuple[int, str]:
        proc = git(list(args), self.root, self.env, check=check)
        return proc.returncode, proc.stdout + proc.stderr


def build(
    root: Path, env: dict[str, str], *, mode: str, a_shared: float = 0.0, b_shared: float = 0.0
) -> Repo:
    """main: the base checkpoint; A: head changed (and SHARED by ``a_shared``); B: layers 3-5
    changed (and SHARED by ``b_shared``). ``mode``: plain, lfs, or lfs with ``lfs.storage``
    elsewhere. ``model-diff install`` runs before the branches are made; A is checked out."""
    root.mkdir(parents=True)
    git(["init", "-q", "-b", "main"], root, env)
    if mode != "plain":
        git(["lfs", "install", "--local"], root, env)
        if mode == "lfs-storage":
            git(["config", "lfs.storage", str(root.parent / "lfs-store")], root, env)
        git(["lfs", "track", "*.safetensors"], root, env)
    r = run_model_diff(["install"], env, cwd=root)
    assert r.returncode == 0, r.stderr
    base = toy_transformer(n_blocks=6, d_model=16, vocab=32, seed=0)
    a = changed(base, lambda n: n in HEAD, 0.5)
    b = changed(base, _in_layers_3_to_5, -0.25)
    if a_shared:
        a = changed(a, lambda n: n == SHARED, a_shared)
    if b_shared:
        b = changed(b, lambda n: n == SHARED, b_shared)
    save_safetensors(root / FILE, base)
    git(["add", "-A"], root, env)
    git(["commit", "-q", "-m", "base"], root, env)
    for branch, sd in (("B", b), ("A", a)):
        git(["checkout", "-q", "-b", branch, "main"], root, env)
        save_safetensors(root / FILE, sd)
        git(["commit", "-q", "-am", branch], root, env)
    return Repo(root, env, base, a, b)


def assert_lfs_clean(repo: Repo) -> None:
    """The committed blob is a pointer, the work tree holds its object, `git lfs fsck` OK."""
    _, blob = repo.git("cat-file", "-p", f"HEAD:{FILE}")
    pointer = lfs.parse_pointer(blob.encode())
    assert pointer is not None, blob
    data = (repo.root / FILE).read_bytes()
    assert lfs.parse_pointer(data) is None and len(data) == pointer.size
    assert hashlib.sha256(data).hexdigest() == pointer.oid
    rc, out = repo.git("lfs", "fsck")
    assert rc == 0 and "Git LFS fsck OK" in out


@pytest.mark.parametrize("mode", ["plain", "lfs", "lfs-storage"])
def test_merge_takes_each_side_s_tensors_exactly(
    tmp_path: Path, clean_env: dict[str, str], mode: str
) -> None:
    """Acceptance 1: A changed the head, B layers 3-5; `git merge B` on A completes without a
    conflict and the merged file holds A's head, B's layers 3-5 and base elsewhere, bit for
    bit (with LFS: a pointer committed, the checkpoint in the work tree, fsck clean; with
    lfs.storage set, the new object is in that store)."""
    repo = build(tmp_path / "repo", clean_env, mode=mode)
    rc, out = repo.git("merge", "--no-edit", "B")
    assert rc == 0, out
    assert "merged model.safetensors tensor by tensor" in out
    merged = read(repo.root / FILE)
    want = {
        n: repo.a[n] if n in HEAD else repo.b[n] if _in_layers_3_to_5(n) else repo.base[n]
        for n in repo.base
    }
    assert same_bytes(merged, want)
    assert repo.git("status", "--porcelain")[1] == ""
    if mode == "plain":
        _, blob_size = repo.git("cat-file", "-s", f"HEAD:{FILE}")
        assert int(blob_size) == (repo.root / FILE).stat().st_size
        return
    assert_lfs_clean(repo)
    if mode == "lfs-storage":
        oid = hashlib.sha256((repo.root / FILE).read_bytes()).hexdigest()
        assert (tmp_path / "lfs-store" / "objects" / oid[:2] / oid[2:4] / oid).is_file()
        assert not (repo.root / ".git" / "lfs" / "objects" / oid[:2]).exists()


@pytest.mark.parametrize("mode", ["plain", "lfs"])
def test_a_conflict_keeps_ours_and_a_strategy_resolves_it(
    tmp_path: Path, clean_env: dict[str, str], mode: str
) -> None:
    """Acceptance 2: both branches changed SHARED: `git merge` reports a content conflict,
    OURS is in the work tree, the report names exactly that tensor; after `git merge
    --abort` and `git config model-diff.mergeStrategy task-arithmetic`, `git merge` gives
    base + dA + dB for it and exact picks everywhere else."""
    repo = build(tmp_path / "repo", clean_env, mode=mode, a_shared=0.125, b_shared=-0.0625)
    ours_bytes = (repo.root / FILE).read_bytes()
    rc, out = repo.git("merge", "--no-edit", "B", check=False)
    assert rc == 1, out
    assert f"CONFLICT (content): Merge conflict in {FILE}" in out
    assert (repo.root / FILE).read_bytes() == ours_bytes
    _, unmerged = repo.git("ls-files", "-u")
    assert sorted(line.split()[2] for line in unmerged.splitlines()) == ["1", "2", "3"]
    txt, html = mergedriver.report_paths(str(repo.root / ".git"), FILE)
    assert f"model-diff: three-way report: .git/model-diff/merge/{FILE}.txt" in out
    report = Path(txt).read_text()
    named = [ln.split()[-1] for ln in report.splitlines() if ln.startswith("  CONFLICT (")]
    assert named == [SHARED]
    assert "Changed on both sides (1)" in report
    assert SHARED in Path(html).read_text().replace("<wbr>", "")

    repo.git("merge", "--abort")
    repo.git("config", "model-diff.mergeStrategy", "task-arithmetic")
    rc, out = repo.git("merge", "--no-edit", "B")
    assert rc == 0 and "resolved content conflict by task-arithmetic" in out, out
    merged = read(repo.root / FILE)
    b64, a64, t64 = (x[SHARED].astype(np.float64) for x in (repo.base, repo.a, repo.b))
    want_shared = b64 + (a64 - b64) + (t64 - b64)
    assert np.array_equal(merged[SHARED], want_shared.astype(np.float32))
    assert np.allclose(merged[SHARED], b64 + 0.125 - 0.0625, rtol=0, atol=1e-6)
    for n in repo.base:
        if n != SHARED:
            want = repo.a[n] if n in HEAD else repo.b[n] if _in_layers_3_to_5(n) else repo.base[n]
            assert merged[n].tobytes() == want.tobytes(), n
    assert not Path(txt).exists()  # a later clean merge removes the stale report
    if mode == "lfs":
        assert_lfs_clean(repo)


def test_rebase_and_cherry_pick_use_the_driver(tmp_path: Path, clean_env: dict[str, str]) -> None:
    """`git rebase` and `git cherry-pick` run the same driver (ours: the side being built
    on, theirs: the commit replayed): both give A's head with B's layers, without a conflict."""
    repo = build(tmp_path / "repo", clean_env, mode="lfs")
    want = {n: repo.a[n] if n in HEAD else repo.b[n] for n in repo.base}
    repo.git("checkout", "-q", "-b", "picked", "A")
    rc, out = repo.git("cherry-pick", "B")
    assert rc == 0 and "merged model.safetensors tensor by tensor" in out, out
    assert same_bytes(read(repo.root / FILE), want)
    assert_lfs_clean(repo)
    repo.git("checkout", "-q", "B")
    rc, out = repo.git("rebase", "A")
    assert rc == 0 and "merged model.safetensors tensor by tensor" in out, out
    assert same_bytes(read(repo.root / FILE), want)
    assert_lfs_clean(repo)


def test_mergetool_shows_the_report_then_resolves_with_a_strategy(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """`git mergetool -t model-diff`: under the default strategy it prints the three-way report
    and exits non-zero (the file stays conflicted); with a strategy that resolves the conflict
    it writes the merge and git marks the file resolved."""
    repo = build(tmp_path / "repo", clean_env, mode="lfs", a_shared=0.125, b_shared=-0.0625)
    repo.git("config", "mergetool.keepBackup", "false")
    assert repo.git("merge", "--no-edit", "B", check=False)[0] == 1
    rc, out = repo.git("mergetool", "-y", "-t", "model-diff", check=False)
    assert rc != 0
    assert "model-diff three-way report" in out and f"CONFLICT (content) {SHARED}" in out
    assert repo.git("status", "--porcelain", FILE)[1].startswith("UU")
    rc, out = repo.git(
        "-c", "model-diff.mergeStrategy=average", "mergetool", "-y", "-t", "model-diff"
    )
    assert rc == 0 and "1 merged by average" in out, out
    assert repo.git("status", "--porcelain", FILE)[1].startswith("M ")
    merged = read(repo.root / FILE)
    want = (repo.a[SHARED].astype(np.float64) + repo.b[SHARED]) / 2
    assert np.array_equal(merged[SHARED], want.astype(np.float32))
    repo.git("commit", "-q", "-m", "merged")
    assert_lfs_clean(repo)


def test_rev_path_arguments_of_merge_and_compare3(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """`model-diff merge main:F A:F B:F -o OUT` (REV:path, read from history and the LFS store)
    writes the bytes `git merge` produces; compare3 reads REV:path too."""
    repo = build(tmp_path / "repo", clean_env, mode="lfs")
    out = tmp_path / "merged.safetensors"
    r = run_model_diff(
        ["merge", f"main:{FILE}", f"A:{FILE}", f"B:{FILE}", "-o", str(out)],
        clean_env,
        cwd=repo.root,
    )
    assert r.returncode == 0, r.stderr
    r3 = run_model_diff(
        ["compare3", f"main:{FILE}", f"A:{FILE}", f"B:{FILE}"], clean_env, cwd=repo.root
    )
    assert r3.returncode == 0, r3.stderr
    assert f"base    main:{FILE}" in r3.stdout and "0 conflicts" in r3.stdout
    assert repo.git("merge", "--no-edit", "B")[0] == 0
    assert out.read_bytes() == (repo.root / FILE).read_bytes()


def test_unmergeable_input_is_a_conflict_with_a_message(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """A file that is not a checkpoint: the driver exits 1 (a normal conflict for git), says
    why on stderr, and leaves %A as it was; a strategy git config does not know, likewise."""
    work = tmp_path / "w"
    work.mkdir()
    git(["init", "-q"], work, clean_env)
    base, ours, theirs = (work / n for n in ("o", "a", "b"))
    save_safetensors(base, {"w": np.zeros(2, np.float32)})
    ours.write_bytes(b"not a checkpoint at all")
    save_safetensors(theirs, {"w": np.ones(2, np.float32)})
    r = run_model_diff(["merge-driver", "o", "a", "b", "m.safetensors"], clean_env, cwd=work)
    assert r.returncode == 1
    assert "cannot merge m.safetensors tensor by tensor" in r.stderr and "ours kept" in r.stderr
    assert "Traceback" not in r.stderr
    assert ours.read_bytes() == b"not a checkpoint at all"
    save_safetensors(ours, {"w": np.zeros(2, np.float32)})
    git(["config", "model-diff.mergeStrategy", "majority"], work, clean_env)
    r = run_model_diff(["merge-driver", "o", "a", "b", "m.safetensors"], clean_env, cwd=work)
    assert r.returncode == 1 and "not a merge strategy" in r.stderr


def test_an_internal_error_is_a_conflict_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug inside the driver becomes exit 1 with one line naming it: git reports a
    conflict instead of a driver crash."""

    def broken(*args: object, **kw: object) -> object:
        raise RuntimeError("boom")

    monkeypatch.setattr(mergedriver, "merge_file", broken)
    assert mergedriver.main(["o", "a", "b", "m.safetensors"]) == 1
    err = capsys.readouterr().err
    assert "internal error in the merge driver" in err and "RuntimeError: boom" in err
    assert mergedriver.main(["too", "few"]) == 1
    assert "takes 4 arguments" in capsys.readouterr().err


def test_mergetool_by_hand_html_and_strategy(tmp_path: Path, clean_env: dict[str, str]) -> None:
    """`model-diff mergetool --html` writes the HTML report and hands it to the browser
    ($BROWSER), exit 1, MERGED untouched; `--strategy theirs` overrides the (unset) config and
    writes MERGED, exit 0."""
    work = tmp_path / "w"
    work.mkdir()
    git(["init", "-q"], work, clean_env)
    base = {"w": np.zeros(3, np.float32), "v": np.ones(2, np.float32)}
    ours = dict(base, w=np.full(3, 1, np.float32))
    theirs = dict(base, w=np.full(3, 2, np.float32), v=np.full(2, 3, np.float32))
    for name, sd in (("m_BASE_1.safetensors", base), ("m_LOCAL_1.safetensors", ours)):
        save_safetensors(work / name, sd)
    save_safetensors(work / "m_REMOTE_1.safetensors", theirs)
    save_safetensors(work / "m.safetensors", ours)
    before = (work / "m.safetensors").read_bytes()
    args = ["mergetool", "m_BASE_1.safetensors", "m_LOCAL_1.safetensors", "m_REMOTE_1.safetensors"]
    env = dict(clean_env, BROWSER="true")
    r = run_model_diff([*args, "m.safetensors", "--html"], env, cwd=work)
    assert r.returncode == 1, r.stderr
    assert "CONFLICT (content) w" in r.stderr and "HTML report for m.safetensors" in r.stdout
    html = Path(r.stdout.rsplit(": ", 1)[1].split()[0])
    assert html.read_text().startswith("<!DOCTYPE html>")
    html.unlink()
    assert (work / "m.safetensors").read_bytes() == before
    r = run_model_diff([*args, "m.safetensors", "--strategy", "theirs"], env, cwd=work)
    assert r.returncode == 0, r.stderr
    assert same_bytes(read(work / "m.safetensors"), theirs)


def test_no_common_ancestor_merges_what_both_added(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """Both branches added the file (git passes an empty %O): tensors added alike or on one
    side merge; the driver exits 0 with the union in %A."""
    work = tmp_path / "w"
    work.mkdir()
    git(["init", "-q"], work, clean_env)
    (work / "o").write_bytes(b"")
    ours = {"w": np.zeros(2, np.float32), "v": np.ones(3, np.float32)}
    theirs = {"w": np.zeros(2, np.float32), "u": np.full(4, 2, np.float32)}
    save_safetensors(work / "a", ours)
    save_safetensors(work / "b", theirs)
    r = run_model_diff(["merge-driver", "o", "a", "b", "m.safetensors"], clean_env, cwd=work)
    assert r.returncode == 0, r.stderr
    assert same_bytes(read(work / "a"), {**ours, **theirs})
