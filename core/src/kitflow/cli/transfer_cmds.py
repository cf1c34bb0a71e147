"""CLI commands that talk to registries: push, pull, copy, login, logout and tags."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from kitflow.cli.common import (
    emit_json,
    home_option,
    json_option,
    progress_enabled,
    registry_options,
)
from kitflow.errors import KitflowError
from kitflow.options import RegistryOptions
from kitflow.results import TransferResult


def _report(verb: str, result: TransferResult, as_json: bool) -> None:
    if as_json:
        emit_json(result.to_dict())
        return
    from kitflow.ops.store import format_bytes  # kit's size format; imported when used

    parts = [
        f"{format_bytes(result.bytes_transferred)} sent"
        if verb != "Pulled"
        else f"{format_bytes(result.bytes_transferred)} received"
    ]
    if result.blobs_skipped:
        parts.append(f"{result.blobs_skipped} blob(s) already present")
    if result.blobs_mounted:
        parts.append(f"{result.blobs_mounted} mounted")
    if result.retries:
        parts.append(f"{result.retries} retries")
    click.echo(f"{verb} {result.digest} to {result.destination} ({', '.join(parts)})")


@click.command("push")
@click.argument("source")
@click.argument("destination", required=False)
@registry_options
@home_option
@json_option
def push_cmd(
    source: str,
    destination: str | None,
    registry: RegistryOptions,
    home: Path | None,
    as_json: bool,
) -> None:
    """Push a ModelKit from local storage to a registry (SOURCE [DESTINATION])."""
    from kitflow.ops.transfer import push

    result = push(
        source,
        destination,
        registry=registry,
        home=home,
        progress=progress_enabled() and not as_json,
    )
    _report("Pushed", result, as_json)


@click.command("pull")
@click.argument("reference")
@registry_options
@home_option
@json_option
def pull_cmd(reference: str, registry: RegistryOptions, home: Path | None, as_json: bool) -> None:
    """Pull a ModelKit from a registry into local storage, verifying every byte."""
    from kitflow.ops.transfer import pull

    result = pull(
        reference, registry=registry, home=home, progress=progress_enabled() and not as_json
    )
    _report("Pulled", result, as_json)


@click.command("copy")
@click.argument("source")
@click.argument("destination")
@registry_options
@home_option
@json_option
def copy_cmd(
    source: str, destination: str, registry: RegistryOptions, home: Path | None, as_json: bool
) -> None:
    """Copy a ModelKit between registries, OCI layout directories (oci:DIR[:TAG]) and local
    storage (local:REF), skipping and mounting blobs where it can."""
    from kitflow.ops.transfer import copy

    result = copy(
        source,
        destination,
        registry=registry,
        home=home,
        progress=progress_enabled() and not as_json,
    )
    _report("Copied", result, as_json)


@click.command("login")
@click.argument("registry_host", metavar="REGISTRY")
@click.option("-u", "--username", required=True, help="Registry username.")
@click.option(
    "-p",
    "--password",
    "password_arg",
    default=None,
    help="Password (insecure: it lands in shell history; prefer --password-stdin).",
)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@registry_options
@home_option
@json_option
def login_cmd(
    registry_host: str,
    username: str,
    password_arg: str | None,
    password_stdin: bool,
    registry: RegistryOptions,
    home: Path | None,
    as_json: bool,
) -> None:
    """Log in to a registry: check the credentials, then store them in $KITOPS_HOME."""
    from kitflow.content.auth import login
    from kitflow.secret import Secret

    if password_stdin:
        if password_arg:
            raise KitflowError("use either --password or --password-stdin, not both")
        password = sys.stdin.read().rstrip("\r\n")
    elif password_arg is not None:
        click.echo(
            "WARNING: a password on the command line is insecure; use --password-stdin", err=True
        )
        password = password_arg
    elif sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True)
    else:
        raise KitflowError("no password given: pipe it in with --password-stdin")
    path = login(registry_host, username, Secret(password), home=home, options=registry)
    if as_json:
        emit_json({"registry": registry_host, "username": username, "credentials": str(path)})
    else:
        click.echo("Log in successful")


@click.command("logout")
@click.argument("registry_host", metavar="REGISTRY")
@home_option
@json_option
def logout_cmd(registry_host: str, home: Path | None, as_json: bool) -> None:
    """Forget the credentials stored for a registry."""
    from kitflow.content.auth import logout

    removed = logout(registry_host, home=home)
    if as_json:
        emit_json({"registry": registry_host, "removed": removed})
    elif removed:
        click.echo(f"Removed login credentials for {registry_host}")
    else:
        click.echo(f"Not logged in to {registry_host}")


@click.command("tags")
@click.argument("repository")
@click.option("--page-size", type=int, default=None, help="Tags per request (registry pages).")
@registry_options
@home_option
@json_option
def tags_cmd(
    repository: str,
    page_size: int | None,
    registry: RegistryOptions,
    home: Path | None,
    as_json: bool,
) -> None:
    """List the tags of a registry repository (REGISTRY/REPOSITORY), following pagination."""
    from kitflow.ops.transfer import Remotes, registry_reference

    ref = registry_reference(repository, "repository")
    remotes = Remotes(registry, home)
    try:
        tags = remotes.get(ref.name).list_tags(page_size=page_size)
    finally:
        remotes.close()
    if as_json:
        emit_json({"repository": ref.name, "tags": tags})
    else:
        for tag in tags:
            click.echo(tag)


def register(group: Any) -> None:
    """Add the registry commands to the ``kitflow`` group."""
    for command in (push_cmd, pull_cmd, copy_cmd, login_cmd, logout_cmd, tags_cmd):
        group.add_command(command)
