"""The ``check``, ``health`` and ``ci`` commands: options in, ``Outcome`` (text + exit code) out.

``model_diff.cli`` parses flags, calls these and prints what they return; the only files
written here are the ones GitHub names (``$GITHUB_STEP_SUMMARY``, ``$GITHUB_OUTPUT``) and an
explicit ``--report`` path. Exit codes: 0 clean, 1 violations at or above ``--fail-on``,
2 unreadable input or a bad policy / revision.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from model_diff.gitdriver.git import WORKTREE, Repo

from model_diff.errors import EXIT_USAGE, ModelDiffError
from model_diff.output import write_report
from model_diff.terminal import printable

from . import github
from .ci import ci_plan
from .gate import FileResult, Target, check_files, check_target, exit_code, local_opener
from .policy import Policy, load_policy
from .render import counts, render_details, render_json, render_markdown, render_text
from .staged import opener, staged_targets

FORMATS = ("text", "json", "markdown", "github")
FAIL_ON = ("error", "warning", "never")


@dataclass(frozen=True)
class Outcome:
    stdout: str
    exit_code: int
    stderr: str = ""


def policy_for(policy_file: str | None, cwd: str | os.PathLike[str] = ".") -> Policy:
    repo = Repo.find(cwd)
    return load_policy(policy_file, cwd=cwd, top_level=Path(repo.top) if repo else None)


def _render(
    results: Sequence[FileResult],
    *,
    fmt: str,
    command: str,
    policy: Policy,
    fail_on: str,
    deleted: Sequence[str] = (),
) -> str:
    if fmt == "json":
        return render_json(results, policy, fail_on, deleted)
    if fmt == "markdown":
        return render_markdown(results, command, deleted)
    text = render_text(results, command, deleted)
    if fmt == "github":
        lines = github.annotation_lines(results)
        return "\n".join(lines) + ("\n" if lines else "") + text
    return text


def _github_files(
    results: Sequence[FileResult],
    *,
    command: str,
    rc: int,
    deleted: Sequence[str],
    report: str | None,
    environ: Mapping[str, str],
) -> None:
    md = render_markdown(results, command, deleted, max_bytes=github.SUMMARY_MAX_BYTES)
    if environ.get("GITHUB_STEP_SUMMARY"):
        github.append_summary(md, environ["GITHUB_STEP_SUMMARY"])
    if environ.get("GITHUB_OUTPUT"):
        c = counts(results)
        outputs = {
            "result": "pass" if rc == 0 else "fail",
            "exit-code": str(rc),
            "checked": str(c["files"]),
            "violations": str(c["errors"] + c["warnings"]),
            "errors": str(c["errors"]),
            "warnings": str(c["warnings"]),
            "unreadable": str(c["unreadable"]),
            # One line per file: a newline inside a name is shown escaped, never a split.
            "failed-files": "\n".join(
                printable(r.path) for r in results if r.status in ("failed", "unreadable")
            ),
        }
        if report:
            outputs["report"] = report
        github.write_outputs(outputs, environ["GITHUB_OUTPUT"])


def _finish(
    results: Sequence[FileResult],
    *,
    fmt: str,
    command: str,
    policy: Policy,
    fail_on: str | None,
    deleted: Sequence[str] = (),
    report: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Outcome:
    env = os.environ if environ is None else environ
    fo = fail_on or policy.fail_on
    rc = exit_code(results, fo)
    if report:
        text = render_markdown(results, command, deleted, max_bytes=1 << 62)
        write_report(report, text + render_details(results))
    if fmt == "github":
        _github_files(results, command=command, rc=rc, deleted=deleted, report=report, environ=env)
    return Outcome(
        _render(results, fmt=fmt, command=command, policy=policy, fail_on=fo, deleted=deleted), rc
    )


def check(
    paths: Sequence[str],
    *,
    staged: bool,
    policy_file: str | None,
    fmt: str,
    fail_on: str | None,
    cwd: str = ".",
    environ: Mapping[str, str] | None = None,
) -> Outcome:
    """``model-diff check OLD NEW`` or ``model-diff check --staged [PATHS...]``."""
    env = os.environ if environ is None else environ
    policy = policy_for(policy_file, cwd)
    deleted: list[str] = []
    if staged:
        targets, deleted = staged_targets(paths, cwd=cwd, environ=env)
        results = [check_target(t, policy) for t in targets]
    else:
        if len(paths) != 2:
            raise ModelDiffError(
                f"check needs OLD and NEW (got {len(paths)} path(s))",
                hint="model-diff check OLD NEW, or model-diff check --staged [PATHS...]",
            )
        results = [check_files(paths[0], paths[1], policy)]
    return _finish(
        results,
        fmt=fmt,
        command="check",
        policy=policy,
        fail_on=fail_on,
        deleted=deleted,
        environ=env,
    )


def health(
    paths: Sequence[str], *, fmt: str, cwd: str = ".", environ: Mapping[str, str] | None = None
) -> Outcome:
    """``model-diff health PATHS...``: single-file checks, no base, no policy."""
    if not paths:
        return Outcome("", EXIT_USAGE, "model-diff: error: health needs at least one path\n")
    repo = Repo.find(cwd)
    targets = []
    for p in paths:
        rel = repo.relative(p, cwd) if repo is not None else None
        # Inside a repo an LFS pointer is resolved from the local store, like the hook's.
        new = opener(repo, WORKTREE, rel, p) if repo is not None and rel else local_opener(p)
        targets.append(Target(path=p, new=new, new_label=p))
    results = [check_target(t, Policy()) for t in targets]
    return _finish(
        results, fmt=fmt, command="health", policy=Policy(), fail_on="error", environ=environ
    )


def ci(
    *,
    base: str,
    head: str | None,
    paths: Sequence[str],
    policy_file: str | None,
    fmt: str,
    fail_on: str | None,
    report: str | None,
    cwd: str = ".",
    environ: Mapping[str, str] | None = None,
) -> Outcome:
    """``model-diff ci --base REF [--head REF]``: every changed checkpoint between revisions."""
    env = os.environ if environ is None else environ
    policy = policy_for(policy_file, cwd)

    plan = ci_plan(base, head, paths, cwd=cwd)
    if report is None and fmt == "github" and env.get("RUNNER_TEMP"):
        report = str(Path(env["RUNNER_TEMP"]) / "model-diff-report.md")
    results = [check_target(t, policy, detail=report is not None) for t in plan.targets]
    return _finish(
        results,
        fmt=fmt,
        command="ci",
        policy=policy,
        fail_on=fail_on,
        deleted=plan.deleted,
        report=report,
        environ=env,
    )
