"""model-diff's own textconv cache: content-keyed, version-keyed, atomic, bounded."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from model_diff.gitdriver.cache import (
    TEXTCONV_FORMAT_VERSION,
    TextconvCache,
    default_root,
    file_key,
)

from model_diff.toy import save_safetensors, toy_transformer
from tests.conftest import run_model_diff


def test_entries_round_trip_and_lru_trim_keeps_the_recent(tmp_path: Path) -> None:
    """put/get round-trips; over the size bound the least recently used entries go first,
    down to 3/4 of the bound."""
    cache = TextconvCache(tmp_path / "c", version=1, max_bytes=4500)
    keys = [f"xxh3-{i:032x}-10" for i in range(5)]
    for i, key in enumerate(keys[:4]):
        cache.put(key, "full", "x" * 1000)
        os.utime(cache._path(key, "full"), (1000 + i, 1000 + i))
    assert all(cache.get(k, "full") == "x" * 1000 for k in keys[:4])  # within the bound
    for i, key in enumerate(keys[:4]):
        os.utime(cache._path(key, "full"), (1000 + i, 1000 + i))
    assert cache.get(keys[1], "full") is not None  # refreshes its mtime: now the newest
    cache.put(keys[4], "full", "y" * 1000)  # 5000 > 4500: trimmed to <= 3375
    assert cache.get(keys[0], "full") is None and cache.get(keys[2], "full") is None
    assert all(cache.get(k, "full") is not None for k in (keys[1], keys[3], keys[4]))
    assert not [p for p in (tmp_path / "c").rglob(".tmp-*")]


def test_a_write_does_not_walk_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes cost O(1) amortised: the size ledger decides when to walk, and a trim leaves
    a quarter of the bound as headroom, so 1,000 writes into a full cache walk it rarely."""
    cache = TextconvCache(tmp_path / "c", version=1, max_bytes=100_000)
    walks = []
    entries = TextconvCache.entries

    def counting(self: TextconvCache) -> list[tuple[float, int, Path]]:
        walks.append(1)
        return entries(self)

    monkeypatch.setattr(TextconvCache, "entries", counting)
    for i in range(1000):
        cache.put(f"xxh3-{i:032x}-10", "full", "z" * 1000)  # 1,000,000 bytes in all
    sizes = [p.stat().st_size for p in (tmp_path / "c").rglob("xxh3-*")]
    assert sum(sizes) <= 100_000
    # Every walk frees >= 1/4 of the bound (25 entries): at most 1000 / 25 walks, not 1000.
    assert 0 < len(walks) <= 40, len(walks)


def test_versions_and_modes_do_not_share_entries(tmp_path: Path) -> None:
    """An entry written by another output-format version or mode is never served."""
    TextconvCache(tmp_path, version=1).put("lfs-" + "a" * 64, "full", "old")
    assert TextconvCache(tmp_path, version=2).get("lfs-" + "a" * 64, "full") is None
    assert TextconvCache(tmp_path, version=1).get("lfs-" + "a" * 64, "fast") is None


def test_file_key_is_xxh3_of_the_bytes_and_size(tmp_path: Path) -> None:
    """The content key depends on the bytes only (not the name), and on every byte."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"\x01" * 5_000_000)
    b.write_bytes(b"\x01" * 4_999_999 + b"\x02")
    assert file_key(a).endswith("-5000000") and file_key(a) != file_key(b)
    (tmp_path / "a2").write_bytes(a.read_bytes())
    assert file_key(tmp_path / "a2") == file_key(a)


def test_cache_lives_under_the_git_common_dir_or_xdg(
    tmp_path: Path, clean_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside a repo (also from a linked worktree) the cache is <common dir>/model-diff;
    outside, $XDG_CACHE_HOME/model-diff."""
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], env=clean_env, check=True)
    subprocess.run(
        ["git", "-C", str(repo), "commit", "-q", "--allow-empty", "-m", "x"],
        env=clean_env,
        check=True,
    )
    wt = tmp_path / "wt"
    subprocess.run(
        ["git", "-C", str(repo), "worktree", "add", "-q", str(wt)], env=clean_env, check=True
    )
    expected = (repo / ".git" / "model-diff" / "textconv-cache").resolve()
    assert default_root(repo) == expected
    assert default_root(wt / ".") == expected
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for var in ("GIT_DIR", "GIT_COMMON_DIR"):
        monkeypatch.delenv(var, raising=False)
    outside = tmp_path / "plain"
    outside.mkdir()
    assert default_root(outside) == tmp_path / "xdg" / "model-diff" / "textconv-cache"


def test_textconv_serves_a_second_run_from_the_cache(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """Second textconv of the same content (any name) reads the cache entry it wrote."""
    env = dict(clean_env, XDG_CACHE_HOME=str(tmp_path / "xdg"))
    path = tmp_path / "m.safetensors"
    save_safetensors(path, toy_transformer(n_blocks=1, d_model=8, vocab=16))
    first = run_model_diff(["textconv", str(path)], env, cwd=tmp_path).stdout
    root = tmp_path / "xdg" / "model-diff" / "textconv-cache"
    entry = root / f"v{TEXTCONV_FORMAT_VERSION}" / "full" / file_key(path)[5:7] / file_key(path)
    assert entry.read_text() == first
    entry.write_text(first + "marker from the cache\n")
    second = run_model_diff(["textconv", str(path)], env, cwd=tmp_path).stdout
    assert second.endswith("marker from the cache\n")
    off = run_model_diff(
        ["textconv", str(path)], dict(env, MODEL_DIFF_NO_CACHE="1"), cwd=tmp_path
    ).stdout
    assert off == first
