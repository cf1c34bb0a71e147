"""CLI verbs for Kitfiles: ``validate`` (kit's rules, every problem listed) and ``init``
(generate a Kitfile from a directory, as ``kit init`` does)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import click

from kitflow.cli.common import emit_json, json_option
from kitflow.errors import KitflowError


@click.command("validate")
@click.argument("path", default=".", type=click.Path(path_type=Path))
@json_option
def validate_cmd(path: Path, as_json: bool) -> None:
    """Check the Kitfile at PATH (a file, or a directory holding one) against kit's rules.

    Exits 0 when it is valid, 1 with every problem on its own line otherwise.
    """
    from kitflow.format.kitfile import check_path

    problems, warnings = check_path(path)
    if as_json:
        emit_json(
            {"path": str(path), "valid": not problems, "problems": problems, "warnings": warnings}
        )
    else:
        for warning in warnings:
            click.echo(f"Warning: {warning}", err=True)
        if problems:
            click.echo(f"Kitfile {path} is not valid:", err=True)
            for problem in problems:
                click.echo(f"  * {problem}", err=True)
        else:
            click.echo(f"Kitfile {path} is valid")
    if problems:
        sys.exit(1)  # SystemExit passes through click (its Exit would be swallowed as 0)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".Kitfile.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@click.command("init")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--name", default=None, help="Name for the ModelKit.")
@click.option("--desc", "description", default=None, help="Description for the ModelKit.")
@click.option("--author", default=None, help="Author for the ModelKit.")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing Kitfile.")
def init_cmd(
    directory: Path, name: str | None, description: str | None, author: str | None, force: bool
) -> None:
    """Generate DIRECTORY/Kitfile from the directory's contents (kit's `init` heuristics)."""
    from kitflow.format.generate import generate_kitfile
    from kitflow.format.kitfile import kitfile_to_yaml

    if not directory.is_dir():
        raise KitflowError(f"{directory} is not a directory")
    target = directory / "Kitfile"
    if target.exists() and not force:
        raise KitflowError(f"Kitfile already exists at {target}. Use '--force' to overwrite")
    kitfile = generate_kitfile(directory, name=name, description=description, author=author)
    text = kitfile_to_yaml(kitfile)
    try:
        _write_atomic(target, text)
    except OSError as exc:
        raise KitflowError(f"Failed to write Kitfile {target}: {exc.strerror}") from None
    click.echo(f"Generated Kitfile:\n\n{text}")
    click.echo(f"Saved to path '{target}'")


def register(group: click.Group) -> None:
    """Add ``validate`` and ``init`` to the ``kitflow`` command group."""
    group.add_command(validate_cmd)
    group.add_command(init_cmd)
