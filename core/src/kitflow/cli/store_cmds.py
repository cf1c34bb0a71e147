"""CLI verbs for building and managing ModelKits locally: pack, unpack, list, inspect, info,
tag, remove, prune, verify (kit's flags; errors are one line with exit code 1)."""

from __future__ import annotations

import json
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

_FILTER_HELP = (
    "What to unpack: <type>[,<type>...][:<name-or-path>,...], types kitfile, model, datasets, "
    "code, prompts, docs, mcpservers. Repeatable; a layer is unpacked if any filter matches."
)


@click.command("pack")
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("-t", "--tag", default=None, help="Reference to tag the ModelKit with.")
@click.option(
    "-f",
    "--file",
    "kitfile",
    default=None,
    type=click.Path(path_type=Path),
    help="Kitfile to use (default: the Kitfile in DIRECTORY).",
)
@click.option(
    "--compression",
    default="none",
    show_default=True,
    type=click.Choice(["none", "gzip", "gzip-fastest", "zstd"]),
    help="Layer compression.",
)
@click.option(
    "--layer-format",
    default="tar",
    show_default=True,
    type=click.Choice(["tar", "raw"]),
    help="Layer format.",
)
@click.option("--use-model-pack", is_flag=True, help="Use CNCF ModelPack media types and config.")
@json_option
@home_option
def pack_cmd(
    directory: Path,
    tag: str | None,
    kitfile: Path | None,
    compression: str,
    layer_format: str,
    use_model_pack: bool,
    as_json: bool,
    home: Path | None,
) -> None:
    """Pack DIRECTORY by its Kitfile into a ModelKit in local storage."""
    from kitflow import api

    result = api.pack(
        directory,
        tag=tag,
        kitfile=kitfile,
        compression=compression,
        layer_format=layer_format,
        use_model_pack=use_model_pack,
        home=home,
        progress=progress_enabled() and not as_json,
    )
    if as_json:
        emit_json(result.to_dict())
        return
    click.echo(f"Model saved: {result.digest}")
    if result.reference:
        click.echo(f"Tagged: {result.reference}")


@click.command("unpack")
@click.argument("reference")
@click.option(
    "-d",
    "--dir",
    "directory",
    default=".",
    type=click.Path(path_type=Path),
    help="Directory to unpack into (created if missing; default: current directory).",
)
@click.option("-f", "--filter", "filters", multiple=True, help=_FILTER_HELP)
@click.option("-o", "--overwrite", is_flag=True, help="Overwrite existing files.")
@click.option("-i", "--ignore-existing", is_flag=True, help="Keep existing files, skip them.")
@click.option("--kitfile", "old_kitfile", is_flag=True, hidden=True)
@click.option("--model", "old_model", is_flag=True, hidden=True)
@click.option("--code", "old_code", is_flag=True, hidden=True)
@click.option("--datasets", "old_datasets", is_flag=True, hidden=True)
@click.option("--docs", "old_docs", is_flag=True, hidden=True)
@json_option
@home_option
@registry_options  # innermost: it wraps the function, later options attach to it
def unpack_cmd(
    reference: str,
    directory: Path,
    filters: tuple[str, ...],
    overwrite: bool,
    ignore_existing: bool,
    registry: RegistryOptions,
    as_json: bool,
    home: Path | None,
    **old: bool,
) -> None:
    """Unpack a ModelKit (from local storage, else straight from its registry)."""
    from kitflow import api

    chosen = list(filters)
    if not chosen:
        names = {
            "old_kitfile": "kitfile",
            "old_model": "model",
            "old_code": "code",
            "old_datasets": "datasets",
            "old_docs": "docs",
        }
        legacy = [names[k] for k, v in old.items() if v]
        if legacy:
            chosen = [",".join(legacy)]
    result = api.unpack(
        reference,
        directory,
        filters=chosen,
        overwrite=overwrite,
        ignore_existing=ignore_existing,
        registry=registry,
        home=home,
        progress=progress_enabled() and not as_json,
    )
    if as_json:
        emit_json(result.to_dict())
        return
    click.echo(
        f"Unpacked {result.reference} ({result.digest}) to {result.directory}: "
        f"{result.files} files, {result.layers} layers"
    )


@click.command("list")
@click.argument("repository", required=False)
@click.option(
    "--format", "fmt", default="table", type=click.Choice(["table", "json"]), help="Output format."
)
@json_option
@home_option
@registry_options
def list_cmd(
    repository: str | None, fmt: str, as_json: bool, home: Path | None, registry: RegistryOptions
) -> None:
    """List the ModelKits in local storage, or in the remote REGISTRY/REPOSITORY[:TAG]."""
    from kitflow import api
    from kitflow.ops.store import list_json, list_remote, list_table
    from kitflow.ops.unpack import parse_ref

    if repository and parse_ref(repository).registry != "localhost":
        summaries = list_remote(repository, registry=registry, home=home)
    else:
        summaries = api.list_modelkits(repository, home=home)
    if as_json or fmt == "json":
        click.echo(json.dumps(list_json(summaries), indent=2))
        return
    click.echo(list_table(summaries))


@click.command("inspect")
@click.argument("reference")
@click.option("-r", "--remote", is_flag=True, help="Read the ModelKit from its registry.")
@home_option
@registry_options  # innermost: it wraps the function, later options attach to it
def inspect_cmd(reference: str, remote: bool, registry: RegistryOptions, home: Path | None) -> None:
    """Print a ModelKit's digest, cliVersion, Kitfile and manifest as JSON."""
    from kitflow import api

    click.echo(
        json.dumps(api.inspect(reference, remote=remote, registry=registry, home=home), indent=2)
    )


@click.command("info")
@click.argument("reference")
@click.option("-r", "--remote", is_flag=True, help="Read the ModelKit from its registry.")
@home_option
@registry_options  # innermost: it wraps the function, later options attach to it
def info_cmd(reference: str, remote: bool, registry: RegistryOptions, home: Path | None) -> None:
    """Print a ModelKit's Kitfile as YAML."""
    from kitflow import api

    click.echo(api.info(reference, remote=remote, registry=registry, home=home), nl=False)


@click.command("tag")
@click.argument("source")
@click.argument("destination")
@home_option
def tag_cmd(source: str, destination: str, home: Path | None) -> None:
    """Give the local ModelKit SOURCE another reference DESTINATION."""
    from kitflow import api

    api.tag(source, destination, home=home)
    click.echo(f"Tagged {destination}")


@click.command("remove")
@click.argument("reference", required=False)
@click.option("-a", "--all", "all_", is_flag=True, help="Remove every untagged ModelKit.")
@click.option(
    "-f",
    "--force",
    is_flag=True,
    help="Remove the ModelKit and every tag that refers to it (with --all: everything).",
)
@click.option("-r", "--remote", is_flag=True, help="Remove the reference from its registry.")
@json_option
@home_option
@registry_options  # innermost: it wraps the function, later options attach to it
def remove_cmd(
    reference: str | None,
    all_: bool,
    force: bool,
    remote: bool,
    registry: RegistryOptions,
    as_json: bool,
    home: Path | None,
) -> None:
    """Remove a ModelKit by tag or digest (or --all untagged ones)."""
    from kitflow import api

    removed = api.remove(
        reference, all_untagged=all_, force=force, remote=remote, registry=registry, home=home
    )
    if as_json:
        emit_json({"removed": removed})
        return
    for item in removed:
        click.echo(f"Removed {item}")


@click.command("prune")
@json_option
@home_option
def prune_cmd(as_json: bool, home: Path | None) -> None:
    """Delete blobs that no ModelKit in local storage refers to."""
    from kitflow.ops.store import format_bytes, prune

    count, freed = prune(home)
    if as_json:
        emit_json({"blobs_removed": count, "bytes_freed": freed})
        return
    click.echo(f"Removed {count} blobs, freed {format_bytes(freed)}")


@click.command("verify")
@json_option
@home_option
def verify_cmd(as_json: bool, home: Path | None) -> None:
    """Re-hash every blob in local storage; exit 1 if anything is corrupt or missing."""
    from kitflow.ops.store import verify

    problems = verify(home)
    if as_json:
        emit_json({"ok": not problems, "problems": problems})
    else:
        for problem in problems:
            click.echo(problem)
    if problems:
        raise KitflowError(
            f"{len(problems)} problem(s) in local storage; remove or pull the affected ModelKits"
        )
    if not as_json:
        click.echo("Local storage verified: no problems found")


COMMANDS: tuple[Any, ...] = (
    pack_cmd,
    unpack_cmd,
    list_cmd,
    inspect_cmd,
    info_cmd,
    tag_cmd,
    remove_cmd,
    prune_cmd,
    verify_cmd,
)


def register(group: click.Group) -> None:
    """Add this module's commands to the ``kitflow`` group."""
    for command in COMMANDS:
        group.add_command(command)
