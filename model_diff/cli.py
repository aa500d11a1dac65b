"""The ``model-diff`` command line: the click group, its commands and one error handler.

The commands live in one module per family (``cli_core``: compare, inspect, demo;
``cli_timeline``: timeline; ``cli_git``: the git drivers and ``diff``; ``cli_gate``: check,
health, ci; ``cli_merge``: merge, compare3, merge-driver, mergetool), with the options they
share in ``cli_options``; this module names them (a command's module is imported only when
that command runs, so ``compare`` never pays for ``merge``'s imports) and turns errors into
exit codes.
Expected errors (``ModelDiffError``) become one line on stderr and their exit code; anything
else is a bug (exit 3). See ``model_diff.errors``.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from . import __version__
from .errors import EXIT_INTERNAL, EXIT_INTERRUPTED, ModelDiffError
from .terminal import printable


def _version_message() -> str:
    from .metrics import version_message

    return version_message()


#: Every command: its name and where it lives (``model_diff.<module>.<attribute>``).
COMMANDS: dict[str, tuple[str, str]] = {
    "compare": ("cli_core", "compare"),
    "inspect": ("cli_core", "inspect"),
    "demo": ("cli_core", "demo"),
    "timeline": ("cli_timeline", "timeline"),
    "textconv": ("cli_git", "textconv"),
    "install": ("cli_git", "install"),
    "uninstall": ("cli_git", "uninstall"),
    "status": ("cli_git", "status"),
    "diff": ("cli_git", "diff_revisions"),
    "difftool": ("cli_git", "difftool"),
    "ext-diff": ("cli_git", "ext_diff"),
    "check": ("cli_gate", "check_cmd"),
    "health": ("cli_gate", "health_cmd"),
    "ci": ("cli_gate", "ci_cmd"),
    "merge": ("cli_merge", "merge"),
    "compare3": ("cli_merge", "compare3"),
    "merge-driver": ("cli_merge", "merge_driver"),
    "mergetool": ("cli_merge", "mergetool"),
}


class LazyGroup(click.Group):
    """A group that imports a command's module when the command is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = COMMANDS.get(cmd_name)
        if where is None:
            return None
        command = getattr(importlib.import_module(f"{__package__}.{where[0]}"), where[1])
        assert isinstance(command, click.Command) and command.name == cmd_name, cmd_name
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, message=_version_message())
def cli() -> None:
    """Compare model checkpoints and explain what training changed."""


def all_commands() -> dict[str, click.Command]:
    """Every command by name, each module imported (for help pages and tests)."""
    ctx = click.Context(cli)
    commands: dict[str, click.Command] = {}
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        assert command is not None, name
        commands[name] = command
    return commands


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
        import traceback  # only for a bug's report (start-up)

        traceback.print_exc()
        click.echo(
            "model-diff: internal error (a bug): please report it with the traceback above",
            err=True,
        )
        sys.exit(EXIT_INTERNAL)
    sys.exit(rv if isinstance(rv, int) else 0)
