"""A/B comparison of several ModelKits on the same inputs, counted line by line: how often all
kits agree and each pair agrees, the merged prediction lines, and the report both the local
runner and the Argo compare step return."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kitflow.inference import io


class Agreement:
    """Agreement counts over the kits' predictions, fed one input line at a time."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self.seen = 0
        self.agree_all = 0
        self.pairs = {(a, b): 0 for a in range(len(labels)) for b in range(a + 1, len(labels))}

    def add(self, predictions: Sequence[Any]) -> None:
        """Count one input line's predictions (one per kit, in label order)."""
        keys = [io.dumps(p) for p in predictions]
        self.seen += 1
        if all(k == keys[0] for k in keys):
            self.agree_all += 1
        for a, b in self.pairs:
            if keys[a] == keys[b]:
                self.pairs[(a, b)] += 1

    def merged_line(self, objects: Sequence[dict[str, Any]], predictions: Sequence[Any]) -> str:
        """The output line: the first kit's record, ``prediction`` = the first kit's and
        ``predictions`` = every kit's by label (JSON, newline-terminated)."""
        merged = {k: v for k, v in objects[0].items() if k != "prediction"}
        merged["prediction"] = predictions[0]
        merged["predictions"] = dict(zip(self.labels, predictions, strict=True))
        return io.dumps(merged) + "\n"

    def report(self, records: int, models: list[dict[str, Any]]) -> dict[str, Any]:
        """The comparison report (``models`` from :func:`model_stats`, one per kit)."""
        return {
            "baseline": self.labels[0],
            "records": records,
            "agreement": round(self.agree_all / records, 6) if records else 1.0,
            "disagreements": records - self.agree_all,
            "pairwise": [
                {
                    "a": self.labels[a],
                    "b": self.labels[b],
                    "agreement": round(n / records, 6) if records else 1.0,
                }
                for (a, b), n in self.pairs.items()
            ],
            "models": models,
        }


def model_stats(records: int, seconds: float, predict_seconds: float) -> dict[str, Any]:
    """One kit's volume and speed in a comparison report (latency from predict time only)."""
    return {
        "records": records,
        "seconds": round(seconds, 6),
        "predict_seconds": round(predict_seconds, 6),
        "latency_ms_per_record": round(1000 * predict_seconds / records, 6) if records else 0.0,
        "records_per_second": round(records / seconds, 2) if seconds else 0.0,
    }
