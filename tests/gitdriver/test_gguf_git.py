"""`git diff` of a GGUF tracked with Git LFS: per-tensor textconv lines, never a failure
(issue 14, acceptance 3). The driver is installed with `model-diff install --pattern`."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_diff.toy import toy_transformer
from tests.conftest import run_model_diff, scrubbed_env
from tests.gitdriver.lfsrepo import changed_lines, git, init_lfs_repo, tensor_names

ggufs = pytest.importorskip("tests.model_diff.formats.ggufs")


def test_git_diff_of_an_lfs_tracked_gguf_shows_the_changed_tensor(tmp_path: Path) -> None:
    """v1 -> v2 with one tensor changed: git diff marks exactly that tensor's line."""
    env = scrubbed_env(tmp_path / "home")
    repo = tmp_path / "repo"
    init_lfs_repo(repo, env, patterns=("*.gguf",))
    r = run_model_diff(["install", "--pattern", "*.gguf"], env, cwd=repo)
    assert r.returncode == 0, r.stderr
    v1 = toy_transformer(n_blocks=2, d_model=32, vocab=64, seed=0)  # rows of 32: Q8_0 blocks
    ggufs.write_llama_gguf(repo / "model.gguf", v1, n_head=2, qtype="Q8_0")
    git(["add", "-A"], repo, env)
    git(["commit", "-q", "-m", "v1"], repo, env)
    v2 = dict(v1)
    v2["model.layers.1.mlp.down_proj.weight"] = v1["model.layers.1.mlp.down_proj.weight"] + 0.5
    ggufs.write_llama_gguf(repo / "model.gguf", v2, n_head=2, qtype="Q8_0")
    git(["commit", "-q", "-am", "v2"], repo, env)
    assert "model.gguf" in git(["lfs", "ls-files"], repo, env).stdout

    diff = git(["diff", "HEAD~1", "--", "model.gguf"], repo, env).stdout
    minus, plus = changed_lines(diff)
    assert tensor_names(minus) == tensor_names(plus) == {"blk.1.ffn_down.weight"}, diff
    assert any(ln.startswith("blk.1.ffn_down.weight Q8_0 [32,128] xxh3:") for ln in plus)
    assert "checkpoint gguf tensors=21" in diff

    (repo / "model.gguf").write_bytes(b"GGUF" + bytes(20))  # a broken working-tree file
    r = git(["diff", "--", "model.gguf"], repo, env, check=False)
    assert r.returncode == 0, r.stderr
    assert "model-diff textconv: error:" in r.stdout and "GGUF" in r.stdout
