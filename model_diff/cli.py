"""The ``model-diff`` command line: the click group, its commands and one error handler.

The commands live in one module per family (``cli_core``: compare, inspect, demo;
``cli_timeline``: timeline; ``cli_git``: the git drivers and ``diff``; ``cli_gate``: check,
health, ci; ``cli_merge``: merge, compare3, merge-driver, mergetool), with the options they
share in ``cli_options``; this module registers them and turns errors into exit codes.
Expected errors (``ModelDiffError``) become one line on stderr and their exit code; anything
else is a bug (exit 3). See ``model_diff.errors``.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

import click

from . import __version__, cli_core, cli_gate, cli_git, cli_merge, cli_timeline
from .errors import EXIT_INTERNAL, EXIT_INTERRUPTED, ModelDiffError
from .terminal import printable


def _version_message() -> str:
    from .metrics import version_message

    return version_message()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, message=_version_message())
def cli() -> None:
    """Compare model checkpoints and explain what training changed."""


for _command in (
    cli_core.compare,
    cli_core.inspect,
    cli_core.demo,
    cli_timeline.timeline,
    cli_git.textconv,
    cli_git.install,
    cli_git.uninstall,
    cli_git.status,
    cli_git.diff_revisions,
    cli_git.difftool,
    cli_git.ext_diff,
    cli_gate.check_cmd,
    cli_gate.health_cmd,
    cli_gate.ci_cmd,
    cli_merge.merge,
    cli_merge.compare3,
    cli_merge.merge_driver,
    cli_merge.mergetool,
):
    cli.add_command(_command)


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
        click.echo(f"model-diff: error: {printable(str(e))}", err=True)
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
