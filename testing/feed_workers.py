"""Worker processes for the cross-process change-feed tests (issue 11).

Two kinds of worker, each run as ``python -P -m reactive_entities.testing.feed_workers``:

* ``soak`` — one of the processes of the cross-process soak. It composes an engine on
  the shared schema, subscribes a :class:`Broadcast` and a :class:`WorkQueue` (group
  :data:`GROUP`) handler to :data:`KIND`, prints ``ready`` and waits for ``go`` on its
  stdin (so every process subscribes before anyone writes). Then its writer threads —
  the global threads ``--threads`` of ``--thread-count``; thread ``t`` owns the entities
  ``e-n`` with ``n % thread_count == t``, so no two threads (or processes) share an
  entity and a per-process :class:`DictStorage` is an honest plugin — write their share
  of ``--total`` changes. It then waits until its broadcast handler received ``--total``
  distinct changes and the group has nothing left (no lag, nothing claimed or waiting),
  or ``--timeout`` passed, and writes a JSON report (:func:`read_report`) to ``--out``:
  what each handler received, in order, as ``[change_id, entity_id, position]``.
* ``member`` — a work-queue member that gets killed. It subscribes ``WorkQueue(group=…,
  lease=…)`` to every change; its handler appends ``H <change_id>`` to ``--out`` (with
  ``fsync``) and returns, except for its ``--block-after``-th change: it appends
  ``B <change_id>`` and blocks inside the handler until the process is killed.

:class:`WorkerProcess` starts either, reads its output lines and stops it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import attrs

from reactive_entities import compose
from reactive_entities.domain.events import ChangeEvent
from reactive_entities.domain.subscriptions import Broadcast, WorkQueue
from reactive_entities.engine import Engine, EntityHandle
from reactive_entities.testing.plugin import DictStorage

__all__ = [
    "GROUP",
    "KIND",
    "FeedItem",
    "WorkerError",
    "WorkerProcess",
    "define_items",
    "entity_ids",
    "member_args",
    "read_report",
    "soak_args",
    "thread_share",
]

KIND = "feed_item"
GROUP = "g"
READY = "ready"
GO = "go"
_LIFETIME = 900.0  # a worker ends by itself after this, whatever happens
_STOP_TIMEOUT = 10.0


class WorkerError(RuntimeError):
    """A worker failed on its own, or did not answer in time."""


@attrs.frozen
class FeedItem:
    """The state of a soak entity: a counter and the thread that wrote it last."""

    n: int
    writer: str


def define_items(
    engine: Engine, storage: DictStorage[FeedItem] | None = None
) -> tuple[EntityHandle[FeedItem], DictStorage[FeedItem]]:
    """Define :data:`KIND` on ``engine`` over a dict storage."""
    storage = storage if storage is not None else DictStorage()
    return engine.define_entity(KIND, FeedItem, read=storage.read), storage


def entity_ids(count: int) -> tuple[str, ...]:
    """The soak's entity ids: ``e-0`` … ``e-{count-1}``."""
    return tuple(f"e-{n}" for n in range(count))


def thread_share(total: int, thread: int, thread_count: int) -> int:
    """How many of ``total`` changes global writer thread ``thread`` writes."""
    return total // thread_count + (1 if thread < total % thread_count else 0)


# -- the soak worker -------------------------------------------------------------------------


class _Received:
    """What one handler received, in order (thread-safe)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []
        self.ids: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, event: ChangeEvent) -> None:
        with self._lock:
            self.rows.append((event.change_id, event.entity_id, str(event.position)))
            self.ids.add(event.change_id)

    def distinct(self) -> int:
        with self._lock:
            return len(self.ids)


def _write(
    handle: EntityHandle[FeedItem],
    storage: DictStorage[FeedItem],
    thread: int,
    thread_count: int,
    entities: int,
    total: int,
    errors: list[str],
) -> None:
    """One writer thread: its share of the changes, round robin over its entities."""
    mine = [e for n, e in enumerate(entity_ids(entities)) if n % thread_count == thread]
    writer = f"t{thread}"
    counters = dict.fromkeys(mine, 0)
    try:
        for k in range(thread_share(total, thread, thread_count)):
            entity_id = mine[k % len(mine)]
            counters[entity_id] += 1
            handle.mutate(entity_id, storage.put(entity_id, FeedItem(counters[entity_id], writer)))
    except Exception as error:  # reported in the JSON: the test fails on it
        errors.append(f"writer {writer}: {type(error).__name__}: {error}")


def _group_done(engine: Engine) -> bool:
    for status in engine.consumers():
        if status.name == GROUP and status.mode == "work-queue":
            return status.lag_changes == 0 and status.in_flight == 0 and status.waiting == 0
    return False


def soak(args: argparse.Namespace, stdin: IO[str], stdout: IO[str]) -> dict[str, Any]:
    """Run one soak process (see the module docstring); returns the report."""
    threads = [int(t) for t in args.threads.split(",") if t]
    broadcast, work = _Received(), _Received()
    errors: list[str] = []
    with compose.postgres(args.dsn, schema=args.schema, pool_size=len(threads) + 4) as engine:
        handle, storage = define_items(engine)
        engine.subscribe(broadcast, kind=KIND, delivery=Broadcast())
        engine.subscribe(work, kind=KIND, delivery=WorkQueue(group=GROUP))
        print(READY, file=stdout, flush=True)
        if stdin.readline().strip() != GO:
            raise WorkerError("expected 'go' on stdin")
        started = time.monotonic()
        writers = [
            threading.Thread(
                target=_write,
                args=(handle, storage, t, args.thread_count, args.entities, args.total, errors),
                name=f"writer-{t}",
            )
            for t in threads
        ]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        written = time.monotonic() - started
        deadline = started + args.timeout
        timed_out = False
        broadcast_seconds: float | None = None
        while True:
            if broadcast_seconds is None and broadcast.distinct() >= args.total:
                broadcast_seconds = time.monotonic() - started
            if broadcast_seconds is not None and _group_done(engine):
                break
            if time.monotonic() > deadline or errors:
                timed_out = not errors
                break
            time.sleep(0.05)
        received = time.monotonic() - started
        time.sleep(args.settle)  # a late duplicate would show up now
        report = {
            "pid": os.getpid(),
            "threads": threads,
            "written": sum(thread_share(args.total, t, args.thread_count) for t in threads),
            "write_seconds": written,
            "broadcast_seconds": broadcast_seconds,
            "receive_seconds": received,
            "timed_out": timed_out,
            "errors": errors,
            "broadcast": list(broadcast.rows),
            "work": list(work.rows),
        }
    Path(args.out).write_text(json.dumps(report), encoding="utf-8")
    return report


def read_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A soak worker's JSON report."""
    report: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return report


# -- the member that gets killed ---------------------------------------------------------------


def member(args: argparse.Namespace) -> None:
    """Run one work-queue member until killed (or its lifetime ends)."""
    out = os.open(args.out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    handled = [0]
    forever = threading.Event()

    def record(line: str) -> None:
        os.write(out, line.encode("ascii"))
        os.fsync(out)

    def handler(event: ChangeEvent) -> None:
        handled[0] += 1
        if handled[0] == args.block_after:
            record(f"B {event.change_id}\n")
            forever.wait(args.lifetime)  # inside the handler, holding the claim: kill me
            return
        record(f"H {event.change_id}\n")

    parent = os.getppid()
    deadline = time.monotonic() + args.lifetime
    engine = compose.postgres(
        args.dsn, schema=args.schema, pool_size=3, poll_interval=args.poll_interval
    )
    try:
        lease = timedelta(seconds=args.lease)
        engine.subscribe(
            handler, delivery=WorkQueue(group=args.group, lease=lease, max_retries=1000)
        )
        while time.monotonic() < deadline and os.getppid() == parent:
            time.sleep(0.1)
    finally:
        forever.set()
        engine.close()
        os.close(out)


# -- starting workers ---------------------------------------------------------------------------


def soak_args(
    dsn: str,
    schema: str,
    *,
    threads: Sequence[int],
    thread_count: int,
    entities: int,
    total: int,
    out: str,
    timeout: float,
    settle: float = 0.5,
) -> list[str]:
    """The command-line arguments of a ``soak`` worker."""
    return [
        "soak",
        *("--dsn", dsn, "--schema", schema),
        *("--threads", ",".join(str(t) for t in threads)),
        *("--thread-count", str(thread_count), "--entities", str(entities)),
        *("--total", str(total), "--out", out),
        *("--timeout", str(timeout), "--settle", str(settle)),
    ]


def member_args(
    dsn: str,
    schema: str,
    *,
    group: str,
    lease: float,
    out: str,
    block_after: int,
    poll_interval: float = 0.2,
) -> list[str]:
    """The command-line arguments of a ``member`` worker."""
    return [
        "member",
        *("--dsn", dsn, "--schema", schema, "--group", group),
        *("--lease", str(lease), "--out", out, "--block-after", str(block_after)),
        *("--poll-interval", str(poll_interval)),
    ]


class WorkerProcess:
    """One worker process: its stdin and stdout are pipes, its stderr a temporary file.
    Use it as a context manager: leaving the block kills it if it still runs."""

    def __init__(self, args: Sequence[str]) -> None:
        # Closed by close(): the file lives as long as the process.
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", "reactive_entities.testing.feed_workers", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def read_line(self, timeout: float) -> str:
        """The next line of the worker's stdout (without its newline)."""
        stdout = self.process.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerError(f"worker {self.pid} printed nothing for {timeout:g} s")
            readable, _, _ = select.select([stdout], [], [], min(left, 0.5))
            if readable:
                line = stdout.readline()
                if not line:
                    self.fail_if_exited()
                    raise WorkerError(f"worker {self.pid} closed its output")
                return line.rstrip("\n")
            self.fail_if_exited()

    def send(self, line: str) -> None:
        """Write one line to the worker's stdin."""
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(line + "\n")
        stdin.flush()

    def fail_if_exited(self) -> None:
        """Raise ``WorkerError`` (with the worker's stderr) if it ended."""
        code = self.process.poll()
        if code is not None:
            raise WorkerError(f"worker {self.pid} exited with {code}:\n{self.stderr()}")

    def stderr(self) -> str:
        """The end of the worker's stderr."""
        if self._stderr.closed:
            return ""
        self._stderr.seek(0)
        return self._stderr.read()[-4000:]

    def finish(self, timeout: float) -> None:
        """Wait for the worker to end by itself; it must end well."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise WorkerError(f"worker {self.pid} still runs after {timeout:g} s") from None
        if self.process.returncode != 0:
            raise WorkerError(
                f"worker {self.pid} ended with {self.process.returncode}:\n{self.stderr()}"
            )

    def kill(self) -> None:
        """SIGKILL the worker (if it still runs) and reap it."""
        self.process.kill()  # a no-op once it was reaped
        self.process.wait(_STOP_TIMEOUT)

    def close(self) -> None:
        """Kill the worker if needed and close its pipes and file (idempotent)."""
        with contextlib.suppress(Exception):
            self.kill()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(Exception):
                    pipe.close()
        self._stderr.close()

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# -- the command line ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``soak`` or ``member`` (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m reactive_entities.testing.feed_workers")
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("soak", help="write, receive, and report as JSON")
    one.add_argument("--dsn", required=True)
    one.add_argument("--schema", required=True)
    one.add_argument("--threads", required=True, help="global writer threads, e.g. 0,3,6")
    one.add_argument("--thread-count", type=int, required=True)
    one.add_argument("--entities", type=int, required=True)
    one.add_argument("--total", type=int, required=True)
    one.add_argument("--out", required=True)
    one.add_argument("--timeout", type=float, default=120.0)
    one.add_argument("--settle", type=float, default=0.5)
    killed = commands.add_parser("member", help="a work-queue member that blocks to be killed")
    killed.add_argument("--dsn", required=True)
    killed.add_argument("--schema", required=True)
    killed.add_argument("--group", required=True)
    killed.add_argument("--lease", type=float, required=True)
    killed.add_argument("--out", required=True)
    killed.add_argument("--block-after", type=int, required=True)
    killed.add_argument("--poll-interval", type=float, default=0.2)
    killed.add_argument("--lifetime", type=float, default=_LIFETIME)
    args = parser.parse_args(argv)
    if args.command == "soak":
        report = soak(args, sys.stdin, sys.stdout)
        print(json.dumps({"timed_out": report["timed_out"], "errors": report["errors"]}))
        return 0
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    member(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
