"""A throwaway PostgreSQL server for tests: ``initdb`` in a temporary directory, then
``pg_ctl start`` on 127.0.0.1 and a free port.

>>> with PostgresServer() as server:  # doctest: +SKIP
...     psycopg.connect(server.dsn)

The server binaries are found on ``PATH`` or under ``/usr/lib/postgresql/*/bin``. When
this process runs as root, every server command runs as the unprivileged ``postgres``
user (``runuser -u postgres --``), because PostgreSQL refuses to run as root; the
temporary directory is handed to that user. The server keeps ``fsync`` on (only
``initdb``'s one-off flush of the template files is skipped: a throwaway cluster that
did not survive a power cut is simply made again).

``stop()`` and ``start()`` may be called again on the same data directory (an outage
test stops the server under a live engine and brings it back on the same port).
``close()`` stops the server and deletes the directory; the context manager and an
``atexit`` hook call it, so a server never outlives the process that started it. Only
the server this object started is ever stopped: by ``pg_ctl`` on its data directory,
and, if that fails, by signalling the postmaster whose pid that directory records.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["PostgresServer", "PostgresServerError", "find_server_binaries"]


class PostgresServerError(RuntimeError):
    """The throwaway server could not be set up, started or stopped."""


def find_server_binaries() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl`` (``PATH`` first, then the newest
    ``/usr/lib/postgresql/*/bin``)."""
    initdb = shutil.which("initdb")
    if initdb is not None and shutil.which("pg_ctl") is not None:
        return Path(initdb).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if candidates:
        return Path(candidates[-1]).parent
    raise PostgresServerError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in "
        "/usr/lib/postgresql/*/bin: install the postgresql package (`make postgres-binaries`)"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One throwaway PostgreSQL cluster; see the module docstring."""

    def __init__(
        self,
        *,
        bin_dir: Path | None = None,
        port: int | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self._bin_dir = bin_dir
        self._port = port
        self._settings = dict(settings or {})
        self._tmp: Path | None = None
        self._running = False
        self._closed = False
        self._run_as: str | None = None

    # -- public --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port the server listens on (chosen at the first start)."""
        if self._port is None:
            raise PostgresServerError("the server was never started")
        return self._port

    @property
    def dsn(self) -> str:
        """A libpq URL for the ``postgres`` database as the ``postgres`` superuser."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def running(self) -> bool:
        """Whether this object started the server and has not stopped it since."""
        return self._running

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self._root / "data"

    def start(self) -> PostgresServer:
        """Create the cluster on first use, then start the server and wait until it
        accepts connections. Starting a running server does nothing."""
        if self._closed:
            raise PostgresServerError("this server was closed; create a new one")
        if self._running:
            return self
        if self._tmp is None:
            self._create_cluster()
        try:
            self._run(
                [
                    str(self._bin("pg_ctl")),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self._root / "server.log"),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            )
        except PostgresServerError as error:
            raise PostgresServerError(f"{error}\n--- server log ---\n{self._log_tail()}") from None
        self._running = True
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown), keeping its data for a later :meth:`start`."""
        if not self._running:
            return
        self._running = False
        try:
            self._run(
                [str(self._bin("pg_ctl")), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]
            )
        except PostgresServerError:
            self._signal_postmaster()
            raise

    def restart(self) -> None:
        """Stop, then start again on the same data directory and port."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server if it runs and delete its directory; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            with contextlib.suppress(PostgresServerError):
                self.stop()
        finally:
            atexit.unregister(self.close)
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"<PostgresServer {state} port={self._port} dir={self._tmp}>"

    # -- internals -----------------------------------------------------------------------

    @property
    def _root(self) -> Path:
        if self._tmp is None:
            raise PostgresServerError("the server was never started")
        return self._tmp

    def _bin(self, name: str) -> Path:
        if self._bin_dir is None:
            self._bin_dir = find_server_binaries()
        return self._bin_dir / name

    def _create_cluster(self) -> None:
        initdb = self._bin("initdb")  # fail before making anything
        self._run_as = "postgres" if os.geteuid() == 0 else None
        self._tmp = Path(tempfile.mkdtemp(prefix="reactive-entities-pg-"))
        atexit.register(self.close)
        if self._run_as is not None:
            try:
                user = pwd.getpwnam(self._run_as)
            except KeyError:
                raise PostgresServerError(
                    "running as root needs an unprivileged `postgres` user to run the server"
                ) from None
            os.chown(self._tmp, user.pw_uid, user.pw_gid)
        socket_dir = self._root / "socket"
        self._run(["mkdir", "-m", "0700", str(socket_dir)])
        self._run(
            [
                str(initdb),
                "-D",
                str(self.data_dir),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ]
        )
        if self._port is None:
            self._port = _free_port()
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self._port),
            "unix_socket_directories": f"'{socket_dir}'",
            "fsync": "on",
            "max_connections": "200",
            "timezone": "'UTC'",
            **self._settings,
        }
        lines = "".join(f"{key} = {value}\n" for key, value in settings.items())
        conf = self.data_dir / "postgresql.conf"
        # Appended through the server's user: the data directory is private to it.
        self._run(["sh", "-c", f'cat >> "{conf}"'], stdin=lines)

    def _run(self, argv: list[str], *, stdin: str | None = None) -> None:
        command = argv if self._run_as is None else ["runuser", "-u", self._run_as, "--", *argv]
        result = subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            cwd="/",
        )
        if result.returncode != 0:
            raise PostgresServerError(
                f"`{' '.join(argv)}` failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )

    def _log_tail(self) -> str:
        log = self._root / "server.log"
        try:
            return "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no server log)"

    def _signal_postmaster(self) -> None:
        """Last resort when ``pg_ctl stop`` failed: SIGQUIT the postmaster whose pid our
        own data directory records (never a process found by name)."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGQUIT)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.05)
