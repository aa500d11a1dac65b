"""The ``model-diff`` command line: the one module that prints, reads flags and exits.

Commands are thin: they build a config, call the engine (or gitdriver / hooks), render and
write. Expected errors (``ModelDiffError``) become one line on stderr and their exit code;
anything else is a bug (exit 3). See ``model_diff.errors`` for the exit codes.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

import click

from . import __version__
from .errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, ModelDiffError


def _version_message() -> str:
    from . import metrics

    return f"model-diff {__version__} (metrics backend: {metrics.BACKEND})"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, message=_version_message())
def cli() -> None:
    """Compare model checkpoints and explain what training changed."""


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the click group with one top-level error handler."""
    try:
        rv: Any = cli.main(args=argv, prog_name="model-diff", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except ModelDiffError as e:
        click.echo(f"model-diff: error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        sys.exit(0)
    except Exception:
        traceback.print_exc()
        click.echo(
            "model-diff: internal error (a bug): please report it with the traceback above",
            err=True,
        )
        sys.exit(EXIT_INTERNAL)
    sys.exit(rv if isinstance(rv, int) else 0)


_ = EXIT_USAGE  # re-exported for commands below


# --- hooks commands ---
_FORMATS = click.Choice(["text", "json", "markdown", "github"])
_FAIL_ON = click.Choice(["error", "warning", "never"])


def _emit_outcome(outcome: Any) -> None:
    """Print a hooks ``Outcome`` and exit with its code (the one place hooks output goes out)."""
    if outcome.stdout:
        click.echo(outcome.stdout, nl=False)
    if outcome.stderr:
        click.echo(outcome.stderr, nl=False, err=True)
    click.get_current_context().exit(outcome.exit_code)


@cli.command("check")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--staged", is_flag=True,
              help="Check staged checkpoints against HEAD (what the pre-commit hook runs).")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False),
              help="TOML policy file (default: [tool.model-diff.check] in pyproject.toml).")
@click.option("--format", "fmt", type=_FORMATS, default="text", show_default=True)
@click.option("--fail-on", type=_FAIL_ON, default=None,
              help="Violations that fail the check (default: the policy's fail_on, 'error').")
def check_cmd(paths: tuple[str, ...], staged: bool, policy_file: str | None, fmt: str,
              fail_on: str | None) -> None:
    """Fail on NaN/Inf, frozen layers and instability: OLD NEW, or --staged [PATHS...].

    Exit 0 clean, 1 policy violated, 2 unreadable input or bad policy.
    """
    from hooks import commands  # noqa: PLC0415 (keeps other commands' startup cheap)

    _emit_outcome(commands.check(list(paths), staged=staged, policy_file=policy_file,
                                 fmt=fmt, fail_on=fail_on))


@cli.command("health")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--format", "fmt", type=_FORMATS, default="text", show_default=True)
def health_cmd(paths: tuple[str, ...], fmt: str) -> None:
    """Single-file checks (readable, not truncated, no NaN/Inf): exit 0, 1 NaN/Inf, 2 unreadable."""
    from hooks import commands  # noqa: PLC0415 (keeps other commands' startup cheap)

    _emit_outcome(commands.health(list(paths), fmt=fmt))


@cli.command("ci")
@click.option("--base", required=True, help="Base revision (e.g. the pull request's base sha).")
@click.option("--head", default="HEAD", show_default=True,
              help="Head revision; '-' compares the base with the working tree.")
@click.option("--paths", multiple=True, help="Glob(s) of checkpoints to check (repeatable).")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=_FORMATS, default="text", show_default=True)
@click.option("--fail-on", type=_FAIL_ON, default=None,
              help="Violations that fail the job (default: the policy's fail_on, 'error').")
@click.option("--report", type=click.Path(dir_okay=False),
              help="Also write the full Markdown report here.")
def ci_cmd(*, base: str, head: str, paths: tuple[str, ...], policy_file: str | None, fmt: str,
           fail_on: str | None, report: str | None) -> None:
    """Check every checkpoint changed between --base and --head (GitHub annotations too)."""
    from hooks import commands  # noqa: PLC0415 (keeps other commands' startup cheap)

    _emit_outcome(commands.ci(base=base, head=None if head == "-" else head, paths=list(paths),
                              policy_file=policy_file, fmt=fmt, fail_on=fail_on,
                              report=report))
