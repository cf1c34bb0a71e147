"""A scoring worker process for the local backend (``python -m kitflow.inference.worker``).

It reads shard tasks as JSON lines on stdin and answers with progress and outcome lines on a
private copy of stdout; the user's own prints go to stderr so they cannot corrupt the protocol.
The runner uses these subprocess workers where it cannot fork workers with the model already
loaded (:mod:`kitflow.inference.forkpool`): an isolated environment's interpreter, other threads
running in the caller, not Linux. Plain subprocesses (not multiprocessing) mean no re-import of
the caller's ``__main__`` and no fork of a threaded parent.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from kitflow.inference import io
from kitflow.inference.job import EntrypointSpec


def task_to_json(task: Any) -> str:
    """One line describing a :class:`kitflow.inference.local.ShardTask`."""
    return io.dumps(
        {
            "span": asdict(task.span),
            "input_path": str(task.input_path),
            "output_path": str(task.output_path),
            "kit_root": str(task.kit_root),
            "kitfile": task.kitfile,
            "entrypoint": asdict(task.entrypoint),
            "batch_size": task.batch_size,
            "id_field": task.id_field,
            "python": task.python,
        }
    )


def task_from_json(text: str) -> Any:
    """The ShardTask a :func:`task_to_json` line describes."""
    from kitflow.inference.local import ShardTask

    data = json.loads(text)
    entry = data["entrypoint"]
    entry["command"] = tuple(entry.get("command") or ())
    return ShardTask(
        span=io.ShardSpan(**data["span"]),
        input_path=Path(data["input_path"]),
        output_path=Path(data["output_path"]),
        kit_root=Path(data["kit_root"]),
        kitfile=data["kitfile"],
        entrypoint=EntrypointSpec(**entry),
        batch_size=int(data["batch_size"]),
        id_field=data["id_field"],
        python=data.get("python"),
    )


def _private_stdout() -> IO[str]:
    """Keep the real stdout for the protocol and point fd 1 (and ``sys.stdout``) at stderr."""
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "w", buffering=1, encoding="utf-8")


def die_with_parent(parent: int | None = None) -> None:
    """On Linux, ask the kernel to kill this worker when the runner (``parent``, default the
    current parent) dies, even by SIGKILL or an unhandled SIGTERM, so no orphan keeps scoring."""
    if not sys.platform.startswith("linux"):
        return
    if parent is None:
        parent = os.getppid()
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the runner died before prctl took effect
        os._exit(1)


def main() -> int:
    """Serve tasks until stdin closes."""
    from kitflow.inference import local

    die_with_parent()
    channel = _private_stdout()

    class _Progress:
        def put(self, count: int) -> None:
            channel.write(f'{{"progress":{count}}}\n')

    local._PROGRESS_QUEUE = _Progress()
    for line in sys.stdin:
        if not line.strip():
            continue
        task = task_from_json(line)
        outcome = local.score_shard(task)
        channel.write(io.dumps({"outcome": asdict(outcome)}) + "\n")
        channel.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
