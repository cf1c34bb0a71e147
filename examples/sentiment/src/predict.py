"""Inference entrypoint of the sentiment ModelKit (kitflow's Python contract): ``load`` once per
worker, ``predict`` once per batch, one label per record in the same order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib

MODEL_FILE = "model.joblib"


def load(model_path: str) -> Any:
    """Load the fitted scikit-learn pipeline from the kit's model directory (or file)."""
    path = Path(model_path)
    return joblib.load(path / MODEL_FILE if path.is_dir() else path)


def _text(record: Any) -> str:
    if isinstance(record, str):
        return record
    if isinstance(record, dict):
        text = record.get("text")
        if isinstance(text, str):
            return text
    raise ValueError(f"record has no 'text' string: {record!r}"[:200])


def predict(model: Any, records: list[Any]) -> list[str]:
    """``"positive"`` or ``"negative"`` for each record (a string or an object with ``text``)."""
    texts = [_text(record) for record in records]
    return [str(label) for label in model.predict(texts)]
