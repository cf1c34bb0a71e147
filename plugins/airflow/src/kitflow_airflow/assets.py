"""ModelKits as Airflow Assets: ``oci://registry/repository@sha256:...``.

A push emits an asset event for the exact manifest digest through an ``AssetAlias`` (the digest
is only known at run time), so downstream DAGs can be scheduled on a new model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult

from airflow.sdk import Asset, AssetAlias
from kitflow.format.reference import Reference

if TYPE_CHECKING:
    from airflow.sdk import Context

OCI_SCHEME = "oci"


def modelkit_uri(reference: str, digest: str) -> str:
    """``oci://registry/repository@digest`` for a reference (tag or digest) and its digest."""
    ref = Reference.parse(reference)
    return f"{OCI_SCHEME}://{ref.registry}/{ref.repository}@{digest}"


def modelkit_asset(reference: str, digest: str, **kwargs: Any) -> Asset:
    """The Asset of one pushed ModelKit manifest."""
    return Asset(uri=modelkit_uri(reference, digest), **kwargs)


def default_alias_name(reference: str) -> str | None:
    """``modelkit:registry/repository`` for a literal reference; None if it is templated."""
    if "{{" in reference or "{%" in reference:
        return None
    ref = Reference.parse(reference)
    return f"modelkit:{ref.registry}/{ref.repository}"


def emit_modelkit_event(
    context: Context, outlets: list[Any], reference: str, digest: str, extra: dict[str, Any]
) -> str:
    """Record the pushed ModelKit on this task's outlets: added to every ``AssetAlias`` outlet
    as ``oci://...@digest``, and ``extra`` set on every plain ``oci://`` Asset outlet.
    Returns the asset URI."""
    uri = modelkit_uri(reference, digest)
    events = context.get("outlet_events")
    if events is None:
        return uri
    for outlet in outlets:
        if isinstance(outlet, AssetAlias):
            events[outlet].add(Asset(uri=uri), extra=extra)
        elif isinstance(outlet, Asset) and outlet.uri.startswith(f"{OCI_SCHEME}://"):
            events[outlet].extra.update(extra)
    return uri


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Validate ``oci://`` asset URIs for Airflow (registered under ``asset-uris``)."""
    if not uri.netloc:
        raise ValueError("oci:// asset URIs must name a registry: oci://registry/repository")
    if not uri.path.strip("/"):
        raise ValueError("oci:// asset URIs must name a repository: oci://registry/repository")
    return uri
