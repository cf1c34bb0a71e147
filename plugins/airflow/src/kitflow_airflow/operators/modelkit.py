"""Operators that pack, push, pull and unpack ModelKits: each one call into ``kitflow.api``,
returning the core's result as a plain dict (reference, digest, sizes, counts) to XCom."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import AssetAlias
from kitflow import api

from kitflow_airflow.assets import default_alias_name, emit_modelkit_event
from kitflow_airflow.operators._base import KitBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class KitPackOperator(KitBaseOperator):
    """Pack a directory by its Kitfile into the local store (kit's ``pack -t TAG``).

    :param context_dir: directory with the Kitfile and the files it names.
    :param tag: reference to tag the ModelKit with (``registry/repo:tag``); a reference without
        a registry gets the connection's registry. Templates may use ``{{ run_id | oci_tag }}``.
    :param kitfile: Kitfile path when it is not in ``context_dir``.
    :param compression: layer compression (``none`` keeps kit-identical bytes).
    :return: XCom: ``{"reference", "digest", "config_digest", "size", "layers": [...], ...}``.
    """

    template_fields: Sequence[str] = ("context_dir", "tag", "kitfile", "home")

    def __init__(
        self,
        *,
        context_dir: str,
        tag: str | None = None,
        kitfile: str | None = None,
        compression: str = "none",
        layer_format: str = "tar",
        use_model_pack: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.context_dir = context_dir
        self.tag = tag
        self.kitfile = kitfile
        self.compression = compression
        self.layer_format = layer_format
        self.use_model_pack = use_model_pack

    def execute(self, context: Context) -> dict[str, Any]:
        """Pack and return the PackResult as a dict."""
        tag = self.registry_hook().qualify(self.tag) if self.tag else None
        result = self.call(
            api.pack,
            self.context_dir,
            tag=tag,
            kitfile=self.kitfile,
            compression=self.compression,
            layer_format=self.layer_format,
            use_model_pack=self.use_model_pack,
            home=self.home,
        )
        self.log.info("Packed %s (%s, %d bytes)", result.reference, result.digest, result.size)
        return result.to_dict()


class KitPushOperator(KitBaseOperator):
    """Push a ModelKit from the local store to its registry and emit it as an Asset.

    The pushed manifest becomes an asset event ``oci://registry/repository@sha256:...`` on an
    ``AssetAlias`` outlet (``asset_alias``, by default ``modelkit:registry/repository``), so
    DAGs scheduled on that alias run on every new model.

    :param reference: local ModelKit to push.
    :param destination: push under another reference instead (kit's ``push SRC DEST``).
    :param asset_alias: alias name for the asset event; ``None`` disables it. Needed when the
        reference is templated (the default name is derived from a literal reference).
    :return: XCom: TransferResult dict plus ``reference`` (pushed), ``digest`` and ``asset_uri``.
    """

    template_fields: Sequence[str] = ("reference", "destination", "home")

    def __init__(
        self,
        *,
        reference: str,
        destination: str | None = None,
        asset_alias: str | None = "",
        **kwargs: Any,
    ) -> None:
        alias = asset_alias
        if alias == "":
            alias = default_alias_name(destination or reference) or f"modelkit:{kwargs['task_id']}"
        if alias:
            outlets = list(kwargs.pop("outlets", None) or [])
            outlets.append(AssetAlias(name=alias))
            kwargs["outlets"] = outlets
        super().__init__(**kwargs)
        self.reference = reference
        self.destination = destination
        self.asset_alias = alias

    def execute(self, context: Context) -> dict[str, Any]:
        """Push (skipping blobs the registry has) and record the asset event."""
        hook = self.registry_hook()
        source = hook.qualify(self.reference)
        destination = hook.qualify(self.destination) if self.destination else None
        result = self.call(api.push, source, destination, registry=hook.get_conn(), home=self.home)
        pushed = result.destination or destination or source
        out = result.to_dict()
        extra = {"reference": pushed, "digest": result.digest, "size": result.size}
        out["reference"] = pushed
        out["asset_uri"] = emit_modelkit_event(
            context, list(self.outlets), pushed, result.digest, extra
        )
        self.log.info(
            "Pushed %s (%s): %d bytes sent, %d skipped",
            pushed,
            result.digest,
            result.bytes_transferred,
            result.bytes_skipped,
        )
        return out


class KitPullOperator(KitBaseOperator):
    """Pull a ModelKit from a registry into the local store, verifying every byte.

    :return: XCom: TransferResult dict (source, destination, digest, size, bytes moved).
    """

    template_fields: Sequence[str] = ("reference", "home")

    def __init__(self, *, reference: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reference = reference

    def execute(self, context: Context) -> dict[str, Any]:
        """Pull and return the TransferResult as a dict."""
        hook = self.registry_hook()
        result = self.call(
            api.pull, hook.qualify(self.reference), registry=hook.get_conn(), home=self.home
        )
        self.log.info("Pulled %s (%s)", result.source, result.digest)
        return result.to_dict()


class KitUnpackOperator(KitBaseOperator):
    """Unpack a ModelKit (from the local store, else straight from its registry) into a directory.

    :param filters: kit's ``--filter`` values (``model``, ``datasets:train``, ...).
    :return: XCom: UnpackResult dict (reference, digest, directory, files, bytes_written, ...).
    """

    template_fields: Sequence[str] = ("reference", "directory", "filters", "home")

    def __init__(
        self,
        *,
        reference: str,
        directory: str,
        filters: Sequence[str] = (),
        overwrite: bool = False,
        ignore_existing: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.reference = reference
        self.directory = directory
        self.filters = list(filters)
        self.overwrite = overwrite
        self.ignore_existing = ignore_existing

    def execute(self, context: Context) -> dict[str, Any]:
        """Unpack and return the UnpackResult as a dict."""
        hook = self.registry_hook()
        result = self.call(
            api.unpack,
            hook.qualify(self.reference),
            self.directory,
            filters=self.filters,
            overwrite=self.overwrite,
            ignore_existing=self.ignore_existing,
            registry=hook.get_conn(),
            home=self.home,
        )
        self.log.info(
            "Unpacked %s: %d files into %s", result.reference, result.files, result.directory
        )
        return result.to_dict()
