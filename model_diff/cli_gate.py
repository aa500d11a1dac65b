"""The gate commands: ``check``, ``health`` and ``ci`` (the pre-commit hooks and CI).

They parse flags, call ``model_diff.hooks.commands`` and print the ``Outcome`` it returns,
with its exit code: 0 clean, 1 violations at or above ``--fail-on``, 2 unreadable input or a
bad policy; ``model_diff.cli`` registers them on the group.
"""

from __future__ import annotations

from typing import Any

import click

from .cli_options import check_output, fail_on_option, format_option, policy_option

GATE_FORMATS = ("text", "json", "markdown", "github")


def emit_outcome(outcome: Any) -> None:
    """Print a hooks ``Outcome`` and exit with its code (the one place hooks output goes out)."""
    if outcome.stdout:
        click.echo(outcome.stdout, nl=False)
    if outcome.stderr:
        click.echo(outcome.stderr, nl=False, err=True)
    click.get_current_context().exit(outcome.exit_code)


@click.command("check")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option(
    "--staged",
    is_flag=True,
    help="Check staged checkpoints against HEAD (what the pre-commit hook runs).",
)
@policy_option
@format_option(GATE_FORMATS, help="Output format.")
@fail_on_option
def check_cmd(
    paths: tuple[str, ...], staged: bool, policy_file: str | None, fmt: str, fail_on: str | None
) -> None:
    """Fail on NaN/Inf, frozen layers and instability: OLD NEW, or --staged [PATHS...].

    Exit 0 clean, 1 policy violated, 2 unreadable input or bad policy. Without --policy the
    policy is [tool.model-diff.check] in the repository's pyproject.toml, else the defaults.
    """
    from model_diff.hooks import commands

    emit_outcome(
        commands.check(
            list(paths), staged=staged, policy_file=policy_file, fmt=fmt, fail_on=fail_on
        )
    )


@click.command("health")
@click.argument("paths", nargs=-1, type=click.Path())
@format_option(GATE_FORMATS, help="Output format.")
def health_cmd(paths: tuple[str, ...], fmt: str) -> None:
    """Single-file checks (readable, not truncated, no NaN/Inf): exit 0, 1 NaN/Inf, 2 unreadable."""
    from model_diff.hooks import commands

    emit_outcome(commands.health(list(paths), fmt=fmt))


@click.command("ci")
@click.option("--base", required=True, help="Base revision (e.g. the pull request's base sha).")
@click.option(
    "--head",
    default="HEAD",
    show_default=True,
    help="Head revision; '-' compares the base with the working tree.",
)
@click.option("--paths", multiple=True, help="Glob(s) of checkpoints to check (repeatable).")
@policy_option
@format_option(GATE_FORMATS, help="Output format.")
@fail_on_option
@click.option(
    "--report",
    type=click.Path(dir_okay=False),
    callback=check_output,
    help="Also write the full Markdown report here (written like -o).",
)
def ci_cmd(
    *,
    base: str,
    head: str,
    paths: tuple[str, ...],
    policy_file: str | None,
    fmt: str,
    fail_on: str | None,
    report: str | None,
) -> None:
    """Check every checkpoint changed between --base and --head (GitHub annotations too)."""
    from model_diff.hooks import commands

    emit_outcome(
        commands.ci(
            base=base,
            head=None if head == "-" else head,
            paths=list(paths),
            policy_file=policy_file,
            fmt=fmt,
            fail_on=fail_on,
            report=report,
        )
    )
