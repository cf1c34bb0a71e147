"""Inference inputs and outputs: read records as JSON Lines (CSV and Parquet converted once),
split them into shards by line ranges without loading the file, and write predictions as
JSON Lines in input order, atomically (a temporary file renamed into place, never half-written)."""

from __future__ import annotations

import contextlib
import csv
import datetime
import decimal
import json
import json.encoder
import json.scanner
import os
import re
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from kitflow.errors import KitflowError, NotFoundError
from kitflow.inference.job import InputFormat, detect_format

PositionUnit = Literal["line", "row"]
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class PreparedInput:
    """A JSON Lines file ready to shard: the user's file itself, or a copy converted from
    CSV/Parquet (then positions are data rows, counted from 1 without the header)."""

    path: Path  # JSON Lines read by the shards
    source: Path  # the file the user named (for messages)
    records: int
    unit: PositionUnit = "line"

    def position(self, line: int) -> str:
        """Where a record is, in the user's terms: ``inputs.jsonl line 7`` / ``rows.csv row 3``."""
        return f"{self.source.name} {self.unit} {line}"


@dataclass(frozen=True)
class ShardSpan:
    """A contiguous range of records: ``count`` records starting at record index ``start``,
    whose first line begins at byte ``offset`` and is line number ``line`` (1-based)."""

    index: int
    start: int
    count: int
    offset: int
    line: int


# ----------------------------------------------------------------------------- JSON helpers


def to_jsonable(value: Any) -> Any:
    """``json.dumps`` default hook: numpy scalars and arrays, sets, paths, dates, decimals."""
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=to_jsonable)


_ENCODE_STR: Any = json.encoder.encode_basestring  # the C function behind dumps(str)


def dumps(value: Any) -> str:
    """Compact JSON, UTF-8 kept as is, numpy and friends converted."""
    kind = type(value)
    if kind is str:
        return str(_ENCODE_STR(value))
    if kind is int:
        return int.__repr__(value)
    return _ENCODER.encode(value)


def output_record(record: Any, prediction: Any, id_field: str = "id") -> dict[str, Any]:
    """The output object for one record: ``{id_field: ..., "prediction": ...}`` when the record
    is an object carrying ``id_field``, else ``{"prediction": ...}``."""
    if isinstance(record, dict) and id_field in record:
        return {id_field: record[id_field], "prediction": prediction}
    return {"prediction": prediction}


def as_list(predictions: Any) -> list[Any]:
    """Predictions as a plain list (numpy arrays and pandas objects via ``tolist``)."""
    if isinstance(predictions, list):
        return predictions
    tolist = getattr(predictions, "tolist", None)
    if callable(tolist):
        result = tolist()
        if isinstance(result, list):
            return result
    if isinstance(predictions, str | bytes | dict) or not isinstance(predictions, Iterable):
        raise TypeError(f"predict must return a list, got {type(predictions).__name__}")
    return list(predictions)


# ----------------------------------------------------------------------------- reading inputs


def _is_blank(line: bytes) -> bool:
    return not line.strip()


# A newline followed by a whitespace-only line (the engine jumps from newline to newline).
_NEWLINE_BEFORE_BLANK = re.compile(rb"\n(?=[ \t\r\f\v]*\n)")
_BLANK_FIRST_LINE = re.compile(rb"[ \t\r\f\v]*\n")


def count_records(path: Path) -> int:
    """Number of non-blank lines in a JSON Lines file (streamed in 1 MiB blocks cut at line
    ends: newlines counted, whitespace-only lines subtracted)."""
    count = 0
    carry = b""
    with open(path, "rb") as fh:
        while chunk := fh.read(_COPY_CHUNK):
            data = carry + chunk
            cut = data.rfind(b"\n") + 1
            block, carry = data[:cut], data[cut:]
            blank = len(_NEWLINE_BEFORE_BLANK.findall(block))
            if _BLANK_FIRST_LINE.match(block):
                blank += 1
            count += block.count(b"\n") - blank
    if carry.strip():
        count += 1
    return count


def prepare_input(
    path: Path | str, fmt: InputFormat | None = None, workdir: Path | None = None
) -> PreparedInput:
    """Make ``path`` shardable: JSON Lines is used in place; CSV and Parquet are converted once
    (streamed) into ``workdir``. Counts the records."""
    source = Path(path)
    if not source.is_file():
        raise NotFoundError(f"input file {source} does not exist")
    fmt = fmt or detect_format(source)
    if fmt == "jsonl":
        return PreparedInput(path=source, source=source, records=count_records(source))
    target_dir = Path(workdir) if workdir is not None else source.parent
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f".{source.stem}.{uuid.uuid4().hex[:8]}.jsonl"
    try:
        with open(target, "w", encoding="utf-8") as out:
            rows = _iter_csv(source) if fmt == "csv" else _iter_parquet(source)
            count = 0
            for row in rows:
                out.write(dumps(row))
                out.write("\n")
                count += 1
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return PreparedInput(path=target, source=source, records=count, unit="row")


def _iter_csv(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None:
            return
        for row in reader:
            yield {k: v for k, v in row.items() if k is not None}


def _iter_parquet(path: Path) -> Iterator[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError:
        raise KitflowError(
            f"reading {path.name} needs pyarrow: pip install 'kitflow[parquet]'"
        ) from None
    parquet = pq.ParquetFile(path)
    for batch in parquet.iter_batches(batch_size=8192):
        yield from batch.to_pylist()


def plan_shards(prepared: PreparedInput, shards: int) -> list[ShardSpan]:
    """Split the records into ``shards`` contiguous ranges of near-equal size (fewer when
    there are fewer records); one streaming pass finds where each range starts."""
    total = prepared.records
    if total == 0:
        return []
    shards = max(1, min(shards, total))
    if shards == 1:  # the whole file: no need to look for a boundary
        return [ShardSpan(0, 0, total, 0, 1)]
    base, extra = divmod(total, shards)
    starts = []
    position = 0
    for index in range(shards):
        starts.append(position)
        position += base + (1 if index < extra else 0)
    counts = [(starts[i + 1] if i + 1 < shards else total) - starts[i] for i in range(shards)]

    spans: list[ShardSpan] = []
    record = 0
    offset = 0
    line_no = 0
    wanted = 0
    with open(prepared.path, "rb") as fh:
        for line in fh:
            line_no += 1
            if not _is_blank(line):
                if record == starts[wanted]:
                    spans.append(ShardSpan(wanted, record, counts[wanted], offset, line_no))
                    wanted += 1
                    if wanted == shards:
                        break
                record += 1
            offset += len(line)
    if len(spans) != shards:
        raise KitflowError(f"{prepared.source} changed while it was being read; run again")
    return spans


_DECODER: Any = json.JSONDecoder()
_SCAN = json.scanner.make_scanner(_DECODER)  # the C scanner behind json.loads


def parse_line(line: bytes, line_no: int) -> Any:
    """One JSON value from one input line (fast path: the C scanner; errors name the line)."""
    try:
        text = line.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise RecordError(line_no, f"not UTF-8: {exc}") from None
    try:
        value, end = _SCAN(text, 0)
        if end == len(text):
            return value
    except (StopIteration, ValueError):
        pass  # json.loads below gives the precise message (or handles odd whitespace)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise RecordError(line_no, f"not valid JSON: {exc}") from None


def iter_records(path: Path, span: ShardSpan) -> Iterator[tuple[int, Any]]:
    """``(line number, record)`` for each record of ``span``; a line that is not JSON raises
    RecordError naming the line."""
    remaining = span.count
    line_no = span.line - 1
    with open(path, "rb") as fh:
        fh.seek(span.offset)
        for line in fh:
            line_no += 1
            if _is_blank(line):
                continue
            yield line_no, parse_line(line, line_no)
            remaining -= 1
            if remaining == 0:
                return
    if remaining:
        raise KitflowError(f"{path} ended early (changed while running?)")


def iter_batches(
    path: Path, span: ShardSpan, batch_size: int
) -> Iterator[tuple[list[int], list[Any]]]:
    """The records of ``span`` in batches: ``(line numbers, records)``. This is the hot loop of
    local scoring: 1 MiB blocks cut at line ends, decoded once, the C scanner per line, and
    the exact (slow) parser only for lines the fast path does not take."""
    scan = _SCAN
    remaining = span.count
    line_no = span.line - 1
    lines: list[int] = []
    records: list[Any] = []
    carry = b""
    with open(path, "rb") as fh:
        fh.seek(span.offset)
        while remaining:
            chunk = fh.read(_COPY_CHUNK)
            if chunk:
                data = carry + chunk
                cut = data.rfind(b"\n") + 1
                block, carry = data[:cut], data[cut:]
                if not block:
                    continue  # a line longer than the block: read on
            else:
                block, carry = carry, b""  # the last line has no newline
                if not block:
                    break
            try:
                texts = block.decode("utf-8").split("\n")
            except UnicodeDecodeError:
                texts = None
            raws = block.split(b"\n") if texts is None else None
            count = len(texts) if texts is not None else len(raws or [])
            if block.endswith(b"\n"):
                count -= 1  # the empty string after the last newline
            for index in range(count):
                line_no += 1
                try:
                    if texts is None:
                        raise ValueError("not UTF-8")
                    text = texts[index]
                    value, end = scan(text, 0)
                    if end != len(text) and not text[end:].isspace():
                        raise ValueError(end)
                except (StopIteration, ValueError):
                    if raws is None:
                        raws = block.split(b"\n")
                    raw = raws[index]
                    if not raw.strip():
                        continue  # a blank line is not a record
                    value = parse_line(raw, line_no)  # exact error, or odd spacing
                lines.append(line_no)
                records.append(value)
                remaining -= 1
                if len(records) >= batch_size or remaining == 0:
                    yield lines, records
                    lines, records = [], []
                    if remaining == 0:
                        return
    if remaining:
        raise KitflowError(f"{path} ended early (changed while running?)")


def write_span(path: Path, span: ShardSpan, dest: Path) -> None:
    """Copy the lines of ``span`` to ``dest`` (the shard file a command entrypoint reads)."""
    with open(dest, "w", encoding="utf-8") as out:
        for _line_no, record in iter_records(path, span):
            out.write(dumps(record))
            out.write("\n")


class RecordError(Exception):
    """One record could not be read or scored; carries its line number in the prepared input."""

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}")


# ----------------------------------------------------------------------------- writing outputs


def write_predictions(
    out: IO[str], records: Sequence[Any], predictions: Sequence[Any], id_field: str
) -> None:
    """Write one output line per record (same order); the same text as
    ``dumps(output_record(record, prediction, id_field))``, built without the dict."""
    encode_str = _ENCODE_STR
    key = "{" + dumps(id_field) + ":"
    keep_id = id_field != "prediction"
    parts = []
    for record, prediction in zip(records, predictions, strict=True):
        answer = encode_str(prediction) if type(prediction) is str else dumps(prediction)
        if keep_id and type(record) is dict and id_field in record:
            ident = record[id_field]
            ident_text = encode_str(ident) if type(ident) is str else dumps(ident)
            parts.append(key + ident_text + ',"prediction":' + answer + "}")
        else:
            parts.append('{"prediction":' + answer + "}")
    parts.append("")
    out.write("\n".join(parts))


def concat_files(parts: Iterable[Path], dest: Path) -> None:
    """Append the files ``parts`` into ``dest`` in order (streamed)."""
    with open(dest, "wb") as out:
        for part in parts:
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, _COPY_CHUNK)


def owner_tag() -> str:
    """``<host>-<pid>`` of this process, for names of temporary files a later run may sweep."""
    host = "".join(c if c.isalnum() else "_" for c in socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def private_prefix(dest: Path) -> str:
    """Names of our temporary files and directories beside ``dest`` start with this; they carry
    the host and process id so that a later run can sweep what a killed run left."""
    return f".{dest.name}.kitflow-{owner_tag()}-"


def sweep_stale(directory: Path, prefix: str) -> None:
    """Remove leftovers named ``<prefix><host>-<pid>-...`` of dead processes on this host (a run
    killed with SIGKILL cannot clean up after itself)."""
    host = owner_tag().rsplit("-", 1)[0]
    lead = f"{prefix}{host}-"
    try:
        entries = list(directory.iterdir())
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(lead):
            continue
        pid_text = entry.name[len(lead) :].split("-", 1)[0]
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def temp_path(dest: Path) -> Path:
    """A fresh temporary name beside ``dest`` (same directory, so a rename is atomic)."""
    return dest.parent / f"{private_prefix(dest)}{uuid.uuid4().hex[:12]}.tmp"


def commit_file(tmp: Path, dest: Path) -> None:
    """Move ``tmp`` over ``dest`` in one rename: readers see the old file or the whole new one."""
    os.replace(tmp, dest)


@contextlib.contextmanager
def scratch_dir(dest: Path) -> Iterator[Path]:
    """A private working directory beside ``dest``, removed on exit whatever happens (and, if
    this process is killed outright, by the next run that writes ``dest``)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(dest.parent, f".{dest.name}.kitflow-")
    work = Path(tempfile.mkdtemp(prefix=private_prefix(dest), dir=dest.parent))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def find_dataset_file(kit_dir: Path, entry_path: str, name: str) -> Path:
    """The input file of a dataset entry: the file itself, or the one readable file in its
    directory."""
    target = (kit_dir / entry_path).resolve()
    if not str(target).startswith(str(kit_dir.resolve())):
        raise KitflowError(f"dataset {name!r}: path {entry_path!r} leaves the ModelKit")
    if target.is_file():
        return target
    if target.is_dir():
        from kitflow.inference.job import FORMAT_BY_SUFFIX

        files = sorted(
            p for p in target.rglob("*") if p.is_file() and p.suffix.lower() in FORMAT_BY_SUFFIX
        )
        if len(files) == 1:
            return files[0]
        if not files:
            raise KitflowError(
                f"dataset {name!r} ({entry_path}) holds no .jsonl, .csv or .parquet file"
            )
        listed = ", ".join(str(f.relative_to(target)) for f in files[:5])
        raise KitflowError(
            f"dataset {name!r} ({entry_path}) holds several input files ({listed}); "
            "name one file with --input instead"
        )
    raise NotFoundError(f"dataset {name!r}: {entry_path} is not in the unpacked ModelKit")
