"""Entry point of the `kitflow` command: builds the command group and turns user errors into
one line on stderr with exit code 1 (tracebacks are left for bugs)."""

from __future__ import annotations

import importlib
import logging
import sys

import click

from kitflow import __version__
from kitflow.errors import KitflowError

# Modules that each add their commands to the group with a ``register(group)`` function.
COMMAND_MODULES = (
    "kitflow.cli.kitfile_cmds",
    "kitflow.cli.store_cmds",
    "kitflow.cli.transfer_cmds",
    "kitflow.cli.run_cmds",
    "kitflow.cli.argo_cmds",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kitflow")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """kitflow: package ML projects as KitOps ModelKits, move them through OCI registries,
    and run inference locally or on Argo Workflows."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def build() -> click.Group:
    """Attach every command module that is present (each is optional while the CLI grows)."""
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(cli)
    return cli


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; exit 0 on success, 1 on a user error with a one-line message."""
    group = build()
    try:
        # Without standalone mode click returns ctx.exit()'s code instead of exiting with it.
        rc = group.main(args=argv, prog_name="kitflow", standalone_mode=False)
    except KitflowError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Error: aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        message = exc.format_message()
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        click.echo(f"Error: {message}{hint}", err=True)
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(0)
    except KeyboardInterrupt:
        click.echo("Error: interrupted", err=True)
        sys.exit(130)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
