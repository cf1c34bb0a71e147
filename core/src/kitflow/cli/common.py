"""Options and output helpers shared by every CLI command module."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from kitflow.options import RegistryOptions
from kitflow.secret import Secret

F = TypeVar("F", bound=Callable[..., Any])


def _bool_flag(value: str) -> bool:
    low = value.strip().lower()
    if low in ("true", "1", "yes", "on"):
        return True
    if low in ("false", "0", "no", "off"):
        return False
    raise click.BadParameter(f"expected true or false, got {value!r}")


def registry_options(func: F) -> F:
    """Add kit's network flags (--plain-http, --tls-verify, --cert, --key, ...) to a command.

    The command receives one ``registry: RegistryOptions`` argument in their place.
    """
    options = [
        click.option("--plain-http", is_flag=True, default=False, help="Use HTTP, not HTTPS."),
        click.option(
            "--tls-verify",
            default="true",
            metavar="BOOL",
            help="Verify the registry's TLS certificate (default true); =false skips it.",
        ),
        click.option(
            "--ca-file",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="CA bundle to verify the registry with.",
        ),
        click.option(
            "--cert",
            "client_cert",
            type=click.Path(dir_okay=False, path_type=Path),
            default=lambda: os.environ.get("KITOPS_CLIENT_CERT"),
            help="Client certificate (mTLS).",
        ),
        click.option(
            "--key",
            "client_key",
            type=click.Path(dir_okay=False, path_type=Path),
            default=lambda: os.environ.get("KITOPS_CLIENT_KEY"),
            help="Client key (mTLS).",
        ),
        click.option(
            "--concurrency", type=int, default=5, show_default=True, help="Blobs in flight at once."
        ),
        click.option(
            "--chunk-size",
            type=int,
            default=None,
            help="Upload in PATCH chunks of this many bytes (default: one PUT).",
        ),
    ]

    def wrapper(**kwargs: Any) -> Any:
        registry = RegistryOptions(
            username=os.environ.get("KITFLOW_REGISTRY_USER") or None,
            password=Secret(os.environ["KITFLOW_REGISTRY_PASSWORD"])
            if os.environ.get("KITFLOW_REGISTRY_PASSWORD")
            else None,
            plain_http=kwargs.pop("plain_http"),
            tls_verify=_bool_flag(kwargs.pop("tls_verify")),
            ca_file=kwargs.pop("ca_file"),
            client_cert=kwargs.pop("client_cert"),
            client_key=kwargs.pop("client_key"),
            concurrency=kwargs.pop("concurrency"),
            chunk_size=kwargs.pop("chunk_size"),
        )
        return func(registry=registry, **kwargs)

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    # Keep options declared below this decorator (click stores them on the function).
    wrapper.__click_params__ = list(getattr(func, "__click_params__", []))  # type: ignore[attr-defined]
    result: Any = wrapper
    for option in reversed(options):
        result = option(result)
    return result  # type: ignore[no-any-return]


def json_option(func: F) -> F:
    """Add ``--json`` (machine-readable output) to a command."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(func)


def emit_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout."""
    click.echo(json.dumps(value, indent=2, sort_keys=False, default=str))


def progress_enabled() -> bool:
    """Progress bars only on an interactive terminal."""
    return sys.stderr.isatty()


def home_option(func: F) -> F:
    """Add ``--config`` (kit's override for $KITOPS_HOME)."""
    return click.option(
        "--config",
        "home",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Directory kit keeps its storage in (default $KITOPS_HOME).",
    )(func)
