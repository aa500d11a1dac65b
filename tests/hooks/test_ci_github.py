"""`model-diff ci --format github`: annotations, job summary, step outputs and exit codes."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from model_diff.hooks.github import escape_data, escape_property, format_outputs

from model_diff import toy
from model_diff.terminal import printable
from tests.conftest import run_model_diff

from .conftest import base_state, git, healthy_step, init_repo

# The workflow-command grammar (actions/toolkit command.ts + the runner's parser): one line,
# `::name` then optional ` key=value,key=value` then `::message`. Property values may not hold
# a raw `,` `:` or line break; the message may not hold a raw line break; `%` only in escapes.
COMMAND = re.compile(
    r"^::(?P<name>error|warning|notice)"
    r"(?: (?P<props>[A-Za-z]+=[^,:\r\n]*(?:,[A-Za-z]+=[^,:\r\n]*)*))?"
    r"::(?P<msg>[^\r\n]*)$"
)
ESCAPE = re.compile(r"%(?!25|0D|0A|3A|2C)")

WEIRD_TENSOR = "odd:name,with%percent\nand newline.weight"
WEIRD_FILE = "ckpt:v1,100%.safetensors"


def unescape(s: str) -> str:
    for esc, ch in (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%")):
        s = s.replace(esc, ch)
    return s


def parse_annotations(stdout: str) -> list[dict[str, object]]:
    out = []
    for line in stdout.splitlines():
        if not line.startswith("::"):
            continue
        m = COMMAND.match(line)
        assert m, f"not a valid workflow command: {line!r}"
        assert not ESCAPE.search(line), f"unescaped % in {line!r}"
        props = {}
        if m["props"]:
            for kv in m["props"].split(","):
                k, _, v = kv.partition("=")
                props[k] = unescape(v)
        out.append({"level": m["name"], **props, "message": unescape(m["msg"])})
    return out


def parse_outputs(text: str) -> dict[str, str]:
    """$GITHUB_OUTPUT: `name=value` lines and `name<<DELIM` ... `DELIM` blocks."""
    out: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            end = lines.index(delim, i + 1)
            out[name] = "\n".join(lines[i + 1 : end])
            i = end + 1
        elif line:
            name, value = line.split("=", 1)
            out[name] = value
            i += 1
        else:
            i += 1
    return out


def test_escaping_matches_the_actions_toolkit() -> None:
    """Message escapes % CR LF; properties also : and , (toolkit command.ts)."""
    assert escape_data("a%b\r\nc:d,e") == "a%25b%0D%0Ac:d,e"
    assert escape_property("Frozen: a,b%\n") == "Frozen%3A a%2Cb%25%0A"


def test_multiline_output_uses_a_random_delimiter() -> None:
    """Multiline outputs use the name<<DELIM form; single-line ones name=value."""
    text = format_outputs({"n": "3", "files": "a\nb"})
    assert text.startswith("n=3\nfiles<<ghadelimiter_")
    assert parse_outputs(text) == {"n": "3", "files": "a\nb"}
    assert format_outputs({"files": "a\nb"}) != text[4:]  # a fresh delimiter each time


@pytest.fixture(scope="module")
def ci_repo(
    module_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    """Base commit -> head commit touching checkpoints in every way a PR can (Git LFS)."""
    clean_env = module_env
    repo = init_repo(tmp_path_factory.mktemp("ci") / "repo", clean_env, lfs=True)
    a = base_state()
    a[WEIRD_TENSOR] = np.ones(4, dtype=np.float32)
    toy.save_safetensors(repo / "m.safetensors", a)
    toy.save_safetensors(repo / "ok.safetensors", a)
    toy.save_safetensors(repo / "gone.safetensors", a)
    toy.save_safetensors(repo / WEIRD_FILE, a)
    (repo / "notes.txt").write_text("v1\n")
    git(repo, "add", "-A", env=clean_env)
    git(repo, "commit", "-qm", "base", env=clean_env)
    base = git(repo, "rev-parse", "HEAD", env=clean_env).strip()

    b = healthy_step(a)
    b[WEIRD_TENSOR][1] = np.nan
    toy.save_safetensors(repo / "m.safetensors", b)
    toy.save_safetensors(repo / "ok.safetensors", healthy_step(a, seed=3))
    (repo / "gone.safetensors").unlink()
    w = healthy_step(a, seed=4)
    w["model.norm.weight"] = w["model.norm.weight"].astype(np.float16)
    toy.save_safetensors(repo / WEIRD_FILE, w)
    inf = healthy_step(a)
    inf["lm_head.weight"][0, 0] = np.inf
    (repo / "new").mkdir()
    toy.save_safetensors(repo / "new" / "added.safetensors", inf)
    (repo / "notes.txt").write_text("v2\n")
    git(repo, "add", "-A", env=clean_env)
    git(repo, "commit", "-qm", "head", env=clean_env)
    return repo, base


def test_ci_github_annotations_summary_outputs(
    ci_repo: tuple[Path, str], tmp_path: Path, module_env: dict[str, str]
) -> None:
    """Acceptance 3: grammar-valid escaped annotations, a summary table, outputs, exit 1."""
    repo, base = ci_repo
    summary = tmp_path / "summary.md"
    summary.write_text("previous step\n")
    outputs = tmp_path / "output.txt"
    env = dict(module_env, GITHUB_STEP_SUMMARY=str(summary), GITHUB_OUTPUT=str(outputs))
    r = run_model_diff(
        ["ci", "--base", base, "--head", "HEAD", "--format", "github"], env, cwd=repo
    )
    assert r.returncode == 1, r.stdout + r.stderr
    anns = parse_annotations(r.stdout)
    got = sorted((a["level"], a["file"], str(a["title"]).split(":")[0]) for a in anns)
    assert got == [
        ("error", "m.safetensors", "model-diff nonfinite-values"),
        ("error", "new/added.safetensors", "model-diff nonfinite-values"),
        ("warning", WEIRD_FILE, "model-diff dtype-changed"),
    ]
    nan = next(a for a in anns if a["file"] == "m.safetensors")
    # Shown escaped like everywhere else (printable): the newline is visible, not a break.
    assert printable(WEIRD_TENSOR) in str(nan["message"]) and "(1 NaN)" in str(nan["message"])
    assert "ok.safetensors" not in {a["file"] for a in anns}

    text = summary.read_text()
    assert text.startswith("previous step\n## model-diff ci\n")  # appended, not overwritten
    assert f"| m.safetensors | {base}:m.safetensors -\\> HEAD:m.safetensors | ❌ failed |" in text
    assert "| ok.safetensors |" in text and "✅ ok" in text
    assert "| gone.safetensors | deleted | not checked | | |" in text
    assert "| new/added.safetensors | no base: single-file checks | ❌ failed |" in text
    # one table row: the newline shown as \n, its backslash escaped for Markdown
    assert "odd:name,with%percent\\\\nand newline.weight" in text
    assert len(text.encode()) < 1024 * 1024

    outs = parse_outputs(outputs.read_text())
    assert outs["result"] == "fail" and outs["exit-code"] == "1"
    assert (outs["checked"], outs["errors"], outs["warnings"], outs["violations"]) == (
        "4",
        "2",
        "1",
        "3",
    )
    assert outs["failed-files"].split("\n") == ["m.safetensors", "new/added.safetensors"]


def test_ci_exit_code_follows_fail_on(
    ci_repo: tuple[Path, str], module_env: dict[str, str]
) -> None:
    """--fail-on error|warning|never decides the exit code (errors present)."""
    repo, base = ci_repo
    for fail_on, rc in (("warning", 1), ("never", 0)):
        r = run_model_diff(["ci", "--base", base, "--fail-on", fail_on], module_env, cwd=repo)
        assert r.returncode == rc, r.stdout + r.stderr


def test_ci_warnings_only_fail_only_with_fail_on_warning(
    ci_repo: tuple[Path, str], module_env: dict[str, str]
) -> None:
    """Restricted by --paths to the dtype-changed file: exit 0, or 1 with --fail-on warning."""
    repo, base = ci_repo
    args = ["ci", "--base", base, "--paths", "ckpt*", "--format", "json"]
    r = run_model_diff(args, module_env, cwd=repo)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert [f["path"] for f in doc["files"]] == [WEIRD_FILE]
    assert doc["files"][0]["violations"][0]["code"] == "dtype-changed"
    r = run_model_diff([*args, "--fail-on", "warning"], module_env, cwd=repo)
    assert r.returncode == 1


def test_ci_annotations_capped_at_ten_per_level(
    clean_env: dict[str, str], repo_factory: Callable[..., Path]
) -> None:
    """12 failing files: 10 error annotations, then one notice counting the other 2."""
    repo = repo_factory()
    (repo / "README").write_text("x\n")
    git(repo, "add", "README", env=clean_env)
    git(repo, "commit", "-qm", "base", env=clean_env)
    for i in range(12):
        toy.save_safetensors(
            repo / f"bad{i:02d}.safetensors", {"w": np.array([np.inf, 1.0], dtype=np.float32)}
        )
    git(repo, "add", "-A", env=clean_env)
    git(repo, "commit", "-qm", "bad", env=clean_env)
    r = run_model_diff(["ci", "--base", "HEAD~1", "--format", "github"], clean_env, cwd=repo)
    assert r.returncode == 1
    anns = parse_annotations(r.stdout)
    assert [a["level"] for a in anns] == ["error"] * 10 + ["notice"]
    assert "2 more error(s) and 0 more warning(s)" in str(anns[-1]["message"])


def test_ci_unknown_base_exits_2_with_fetch_hint(
    clean_env: dict[str, str], repo_factory: Callable[..., Path]
) -> None:
    """A base that is not fetched: exit 2 and the git fetch command to run."""
    repo = repo_factory()
    (repo / "README").write_text("x\n")
    git(repo, "add", "README", env=clean_env)
    git(repo, "commit", "-qm", "base", env=clean_env)
    r = run_model_diff(["ci", "--base", "deadbeef" * 5], clean_env, cwd=repo)
    assert r.returncode == 2
    assert "unknown revision" in r.stderr and "git fetch --no-tags --depth=1 origin" in r.stderr


def test_summary_is_bounded_and_says_what_it_left_out(tmp_path: Path) -> None:
    """Thousands of findings: the summary stays under its byte bound and counts the rest."""
    from model_diff.hooks.check import Violation
    from model_diff.hooks.gate import FileResult
    from model_diff.hooks.github import SUMMARY_MAX_BYTES, append_summary
    from model_diff.hooks.render import render_markdown

    results = [
        FileResult(
            path=f"ckpt/{i:05d}.safetensors",
            mode="health",
            violations=[
                Violation(
                    code="nonfinite-values",
                    level="error",
                    title="NaN",
                    message="NaN/Inf values in " + "x" * 300,
                )
            ],
        )
        for i in range(8000)
    ]
    md = render_markdown(results, "ci", max_bytes=SUMMARY_MAX_BYTES)
    assert len(md.encode()) <= SUMMARY_MAX_BYTES < 1024 * 1024
    m = re.search(r"_(\d+) more finding\(s\) not shown", md)
    assert m and int(m.group(1)) == 8000 - md.count("| error | nonfinite-values |")
    m = re.search(r"_(\d+) more checkpoint\(s\) not shown", md)
    assert m and int(m.group(1)) == 8000 - md.count("| no base: single-file checks |")
    assert md.count("| error | nonfinite-values |") > 100  # findings keep half the budget
    out = tmp_path / "summary.md"
    append_summary(md, out)
    assert out.read_bytes() == md.encode()
