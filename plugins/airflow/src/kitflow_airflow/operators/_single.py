"""Single-record inference for the run operators: the record is written to a one-line JSON
Lines file for the core, and its prediction comes back in the XCom result."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from kitflow.errors import KitflowError


def record_files(record: Any, output_path: str | None) -> tuple[str, str]:
    """A temp input file holding ``record`` (a JSON object or a JSON string of one), and the
    output path (``output_path`` or a file next to the input)."""
    if isinstance(record, str):
        try:
            record = json.loads(record)
        except json.JSONDecodeError as err:
            raise KitflowError(f"record is not JSON: {err.msg}") from None
    work = Path(tempfile.mkdtemp(prefix="kitflow-record-"))
    source = work / "record.jsonl"
    source.write_text(json.dumps(record) + "\n", encoding="utf-8")
    return str(source), output_path or str(work / "prediction.jsonl")


def with_prediction(result: dict[str, Any]) -> dict[str, Any]:
    """Add ``prediction`` (the first output line's) to a one-record RunResult dict."""
    output = result.get("output")
    if result.get("records") == 1 and output and Path(output).is_file():
        with open(output, encoding="utf-8") as fh:
            line = json.loads(fh.readline())
        result["prediction"] = line.get("prediction") if isinstance(line, dict) else line
    return result
