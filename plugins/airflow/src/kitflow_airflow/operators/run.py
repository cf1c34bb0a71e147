"""``KitRunOperator``: batch inference with a ModelKit on the worker (kitflow's local backend)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kitflow import api

from kitflow_airflow.operators._base import KitBaseOperator
from kitflow_airflow.operators._single import record_files, with_prediction

if TYPE_CHECKING:
    from airflow.sdk import Context


class KitRunOperator(KitBaseOperator):
    """Score JSON Lines inputs (or a dataset in the kit) with a ModelKit on this worker.

    :param reference: ModelKit reference; a list scores the same inputs with each kit and the
        result carries a comparison.
    :param input_path: input file (JSON Lines, CSV or Parquet); or give ``dataset``.
    :param output_path: where the predictions go (JSON Lines, one line per input line).
    :param entrypoint: override of the Kitfile's ``model.parameters.inference``.
    :param record: score this one record instead of a file; its ``prediction`` is in the XCom.
    :return: XCom: RunResult dict (output, records, model_digest, shards, seconds, ...).
    """

    template_fields: Sequence[str] = (
        "reference",
        "input_path",
        "output_path",
        "dataset",
        "entrypoint",
        "record",
        "home",
    )
    template_fields_renderers = {"record": "json"}

    def __init__(
        self,
        *,
        reference: str | list[str],
        input_path: str | None = None,
        output_path: str | None = None,
        dataset: str | None = None,
        entrypoint: str | None = None,
        shards: int | None = None,
        parallelism: int | None = None,
        batch_size: int = 256,
        retries_per_shard: int = 1,
        run_timeout: float | None = None,
        record: dict[str, Any] | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.reference = reference
        self.input_path = input_path
        self.output_path = output_path
        self.dataset = dataset
        self.entrypoint = entrypoint
        self.shards = shards
        self.parallelism = parallelism
        self.batch_size = batch_size
        self.retries_per_shard = retries_per_shard
        self.run_timeout = run_timeout
        self.record = record

    def references(self) -> str | list[str]:
        """The reference(s), qualified with the connection's registry."""
        return self.qualified(self.reference)

    def execute(self, context: Context) -> dict[str, Any]:
        """Run on the local backend and return the RunResult as a dict."""
        source, output = self.input_path, self.output_path
        if self.record is not None:
            source, output = self.call(record_files, self.record, output)
        result = self.call(
            api.run,
            self.references(),
            source,
            output,
            backend="local",
            shards=self.shards,
            parallelism=self.parallelism,
            entrypoint=self.entrypoint,
            dataset=self.dataset,
            batch_size=self.batch_size,
            retries=self.retries_per_shard,
            registry=self.registry_hook().get_conn(),
            timeout=self.run_timeout,
            home=self.home,
        )
        self.log.info(
            "Scored %d records with %s in %.2fs -> %s",
            result.records,
            result.model_digest,
            result.seconds,
            result.output,
        )
        return with_prediction(result.to_dict())
