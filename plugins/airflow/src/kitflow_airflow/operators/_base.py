"""What every kitflow operator shares: the registry connection, KITOPS_HOME, the ``oci_tag``
template filter, and turning user errors that a retry cannot fix into a failure without retry."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException
from kitflow.errors import ValidationError

from kitflow_airflow.filters import TEMPLATE_FILTERS, oci_tag
from kitflow_airflow.hooks.registry import KitRegistryHook

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context

T = TypeVar("T")

__all__ = ["KitBaseOperator", "no_retry_for_invalid_input", "oci_tag"]


@contextmanager
def no_retry_for_invalid_input() -> Iterator[None]:
    """A Kitfile or input that fails validation will fail again: fail the task without retries."""
    try:
        yield
    except ValidationError as err:
        raise AirflowFailException(str(err)) from err


class KitBaseOperator(BaseOperator):
    """Base for the ModelKit operators: registry connection id and local store location.

    :param kit_registry_conn_id: a ``kitops_registry`` connection (host, login/password, TLS);
        with the default id and no such connection, anonymous access.
    :param home: KITOPS_HOME override (where the local store lives); default as kit resolves it.
    """

    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        kit_registry_conn_id: str | None = KitRegistryHook.default_conn_name,
        home: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.kit_registry_conn_id = kit_registry_conn_id
        self.home = home

    def registry_hook(self) -> KitRegistryHook:
        """The hook for this operator's registry connection."""
        return KitRegistryHook(kit_registry_conn_id=self.kit_registry_conn_id)

    def qualified(self, reference: str | list[str]) -> str | list[str]:
        """The reference (or each of a list) under the connection's registry when it names none."""
        hook = self.registry_hook()
        if isinstance(reference, str):
            return hook.qualify(reference)
        return [hook.qualify(r) for r in reference]

    def render_template_fields(
        self, context: Context, jinja_env: jinja2.Environment | None = None
    ) -> None:
        """Render as usual, with the ``oci_tag`` filter available to templates."""
        if jinja_env is None:
            jinja_env = self.get_template_env()
        for name, fn in TEMPLATE_FILTERS.items():
            jinja_env.filters.setdefault(name, fn)
        super().render_template_fields(context, jinja_env)

    @staticmethod
    def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call into the core, failing without retry on invalid input."""
        with no_retry_for_invalid_input():
            return fn(*args, **kwargs)
