"""A TCP proxy in front of PostgreSQL that can cut one connection at its ``COMMIT``.

It tests what a client does when the connection fails while it commits. Every
connection to the proxy is forwarded to the server; both directions are parsed into
protocol messages (a 1-byte type and a 4-byte length; the untyped startup packets and
the one-byte answers to an ``SSLRequest`` are followed too), so the proxy can see the
``COMMIT`` go by. When :meth:`PostgresProxy.arm` was called, the first connection that
reaches the chosen point is cut (both of its sockets closed) — once:

* ``Cut.BEFORE_COMMIT_SENT``: the client's ``COMMIT`` (a simple query, a ``Parse`` of
  ``COMMIT``, or a ``Bind`` of a statement prepared as ``COMMIT``) is dropped; the
  messages before it are forwarded. The server never commits.
* ``Cut.BEFORE_COMMIT_REPLY``: the server's ``CommandComplete`` of ``COMMIT`` is
  dropped. The server committed; the client never hears of it.
* ``Cut.AFTER_COMMIT_REPLY``: that reply is forwarded, then the connection is cut
  (before ``ReadyForQuery``).

Other connections are not touched, and new ones are accepted after a cut, unless the
proxy *refuses*: then every new connection is closed at once (the server looks down),
either from a cut on (``arm(..., refuse_after=True)``) or by :meth:`refuse`.

>>> proxy = PostgresProxy("postgresql://postgres@127.0.0.1:5432/postgres")
>>> proxy.target
('127.0.0.1', 5432)

The proxy listens on 127.0.0.1 only, on a free port. :meth:`close` (or leaving the
``with`` block) closes every socket and joins every thread it started, and raises if a
thread is still alive.
"""

from __future__ import annotations

import enum
import socket
import threading
from collections.abc import Callable
from contextlib import suppress
from types import TracebackType

from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = ["Cut", "PostgresProxy"]

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_COMMIT_TAG = b"COMMIT\x00"
_JOIN_TIMEOUT = 5.0
_CHUNK = 65536


class Cut(enum.Enum):
    """Where an armed proxy cuts the connection that commits."""

    BEFORE_COMMIT_SENT = "before the COMMIT reaches the server"
    BEFORE_COMMIT_REPLY = "after the server committed, before its reply"
    AFTER_COMMIT_REPLY = "right after the server's COMMIT reply"


class PostgresProxy:
    """A cutting proxy to the server of ``dsn``; see the module docstring."""

    def __init__(self, dsn: str) -> None:
        params = conninfo_to_dict(dsn)
        host = str(params.get("host") or "127.0.0.1")
        port = int(str(params.get("port") or 5432))
        if host != "127.0.0.1":
            raise ValueError(f"the proxy only forwards to 127.0.0.1 (got {host!r})")
        self._target_dsn = dsn
        self.target = (host, port)
        self._lock = threading.Lock()
        self._armed: Cut | None = None
        self._refuse_after = False
        self._refusing = False
        self._cuts = 0
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._accepting: threading.Thread | None = None
        self._links: set[_Link] = set()
        self._accepted = 0
        self._refused = 0
        self._idle = threading.Condition(self._lock)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> PostgresProxy:
        """Listen on 127.0.0.1 (a free port) and start accepting connections."""
        if self._listener is not None:
            raise RuntimeError("the proxy is already started")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.settimeout(0.05)  # the accept loop checks for close() this often
        self._listener = listener
        self._accepting = self._spawn(self._accept_loop, "accept")
        return self

    def close(self) -> None:
        """Stop accepting, cut every connection and join every thread (idempotent).
        Raises ``RuntimeError`` if a thread did not end."""
        self._stopping.set()
        alive = []
        accepting = self._accepting
        if accepting is not None:  # first: it starts no pump once it has ended
            accepting.join(_JOIN_TIMEOUT)
            if accepting.is_alive():
                alive.append(accepting.name)
        with self._lock:
            links = list(self._links)
            threads = list(self._threads)
        for link in links:
            link.cut()
        for thread in threads:
            thread.join(_JOIN_TIMEOUT)
            if thread.is_alive() and thread is not accepting:
                alive.append(thread.name)
        if self._listener is not None:
            self._listener.close()
        if alive:
            raise RuntimeError(f"proxy threads still running after close: {alive}")

    def __enter__(self) -> PostgresProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- what tests use --------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the proxy listens on (127.0.0.1)."""
        if self._listener is None:
            raise RuntimeError("the proxy is not started")
        return int(self._listener.getsockname()[1])

    @property
    def dsn(self) -> str:
        """The target's DSN with the host and port replaced by the proxy's."""
        return make_conninfo(self._target_dsn, host="127.0.0.1", port=str(self.port))

    def arm(self, cut: Cut, *, refuse_after: bool = False) -> None:
        """Cut the next connection that reaches ``cut`` (once). With ``refuse_after``,
        refuse every new connection from that cut on (until :meth:`refuse` ``(False)``)."""
        with self._lock:
            self._armed = cut
            self._refuse_after = refuse_after

    def disarm(self) -> None:
        """Forget an armed cut that did not happen."""
        with self._lock:
            self._armed = None
            self._refuse_after = False

    def refuse(self, refusing: bool = True) -> None:
        """Close every new connection at once (True), or forward them again (False)."""
        with self._lock:
            self._refusing = refusing

    @property
    def cuts(self) -> int:
        """How many connections were cut by an armed cut so far."""
        with self._lock:
            return self._cuts

    @property
    def accepted(self) -> int:
        """How many connections were accepted and forwarded so far."""
        with self._lock:
            return self._accepted

    @property
    def refused(self) -> int:
        """How many connections were refused so far."""
        with self._lock:
            return self._refused

    @property
    def open_connections(self) -> int:
        """Connections currently forwarded."""
        with self._lock:
            return len(self._links)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no connection is forwarded (at most ``timeout`` seconds); whether
        that happened."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._links, timeout)

    # -- internals ------------------------------------------------------------------------

    def _spawn(self, target: Callable[[], None], name: str) -> threading.Thread:
        thread = threading.Thread(
            target=target,
            name=f"pg-proxy-{name}",
            daemon=True,  # a last resort only: close() joins every thread
        )
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()
        return thread

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                refusing = self._refusing
                self._refused += refusing
            if refusing:
                _close(client)
                continue
            try:
                server = socket.create_connection(self.target, timeout=5.0)
            except OSError:
                _close(client)
                continue
            for sock in (client, server):
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(self, client, server)
            with self._lock:
                if self._stopping.is_set():
                    link.cut()
                    link.close_sockets()
                    return
                self._links.add(link)
                self._accepted += 1
            self._spawn(link.pump_from_client, "client")
            self._spawn(link.pump_from_server, "server")

    def _take(self, cut: Cut) -> bool:
        """Whether this connection should be cut at ``cut`` (consumes the arming)."""
        if self._armed is not cut:  # the common case, without the lock
            return False
        with self._lock:
            if self._armed is not cut:
                return False
            self._armed = None
            self._cuts += 1
            if self._refuse_after:
                self._refusing = True
                self._refuse_after = False
            return True

    def _forget(self, link: _Link) -> None:
        with self._idle:
            self._links.discard(link)
            self._idle.notify_all()


class _Link:
    """One forwarded connection: two pumps, one per direction."""

    def __init__(self, proxy: PostgresProxy, client: socket.socket, server: socket.socket) -> None:
        self._proxy = proxy
        self._client = client
        self._server = server
        self._lock = threading.Lock()
        self._pumps = 2
        # The server answers an SSLRequest / GSSENCRequest with one untyped byte.
        self._single_byte_answers = 0
        self._passthrough = False  # encrypted: nothing more to parse
        self._started = False  # the client's startup packet went by: typed messages now
        self._commit_statements: set[bytes] = set()  # statements prepared as COMMIT

    def cut(self) -> None:
        """Shut both sockets down: each pump sees the end and stops."""
        for sock in (self._client, self._server):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close_sockets(self) -> None:
        """Close both sockets (once both pumps stopped, or none ever started)."""
        for sock in (self._client, self._server):
            sock.close()

    def _pump_done(self) -> None:
        self.cut()
        with self._lock:
            self._pumps -= 1
            last = self._pumps == 0
        if last:
            self.close_sockets()
            self._proxy._forget(self)

    # -- client → server ---------------------------------------------------------------------

    def pump_from_client(self) -> None:
        try:
            self._pump(self._client, self._server, self._client_messages)
        finally:
            self._pump_done()

    def pump_from_server(self) -> None:
        try:
            self._pump(self._server, self._client, self._server_messages)
        finally:
            self._pump_done()

    def _pump(
        self,
        source: socket.socket,
        sink: socket.socket,
        split: Callable[[bytearray], tuple[bytes, int, bool]],
    ) -> None:
        buffer = bytearray()
        while True:
            try:
                data = source.recv(_CHUNK)
            except OSError:
                return
            if not data:
                return
            buffer += data
            forward, consumed, cut = split(buffer)
            del buffer[:consumed]
            try:
                if forward:
                    sink.sendall(forward)
            except OSError:
                return
            if cut:
                return

    def _client_messages(self, buffer: bytearray) -> tuple[bytes, int, bool]:
        """Split complete client messages off ``buffer``: (to forward, consumed, cut)."""
        proxy = self._proxy
        start = 0
        size = len(buffer)
        while not self._passthrough:
            if not self._started:
                if size - start < 8:
                    break
                length = int.from_bytes(buffer[start : start + 4], "big")
                if length < 8:  # not PostgreSQL: stop parsing, forward as is
                    self._passthrough = True
                    break
                if size - start < length:
                    break
                code = int.from_bytes(buffer[start + 4 : start + 8], "big")
                if code in (_SSL_REQUEST, _GSSENC_REQUEST):
                    with self._lock:
                        self._single_byte_answers += 1
                else:
                    self._started = True
                start += length
                continue
            if size - start < 5:
                break
            end = start + 1 + int.from_bytes(buffer[start + 1 : start + 5], "big")
            if end < start + 5:  # a length below 4 is not PostgreSQL: stop parsing
                self._passthrough = True
                break
            if size < end:
                break
            if self._is_commit(buffer[start], bytes(buffer[start + 5 : end])) and proxy._take(
                Cut.BEFORE_COMMIT_SENT
            ):
                return bytes(buffer[:start]), size, True
            start = end
        if self._passthrough:
            return bytes(buffer), size, False
        return bytes(buffer[:start]), start, False

    def _is_commit(self, kind: int, body: bytes) -> bool:
        """Whether a client message runs (or prepares) ``COMMIT``; remembers statements
        prepared as ``COMMIT`` so their later ``Bind`` counts too."""
        if kind == ord("Q"):
            return _is_commit_sql(_cstring(body, 0)[0])
        if kind == ord("P"):
            name, offset = _cstring(body, 0)
            query = _cstring(body, offset)[0]
            if not _is_commit_sql(query):
                return False
            if name:
                self._commit_statements.add(name)
            return True
        if kind == ord("B"):
            _, offset = _cstring(body, 0)  # the portal
            statement = _cstring(body, offset)[0]
            return bool(statement) and statement in self._commit_statements
        if kind == ord("C") and body[:1] == b"S":  # Close of a prepared statement
            self._commit_statements.discard(_cstring(body, 1)[0])
        return False

    # -- server → client ---------------------------------------------------------------------

    def _server_messages(self, buffer: bytearray) -> tuple[bytes, int, bool]:
        """Split complete server messages off ``buffer``: (to forward, consumed, cut)."""
        proxy = self._proxy
        start = 0
        size = len(buffer)
        while not self._passthrough and start < size:
            with self._lock:
                single = self._single_byte_answers
                if single:
                    self._single_byte_answers -= 1
            if single:
                if bytes(buffer[start : start + 1]) in (b"S", b"G"):  # encryption: stop parsing
                    self._passthrough = True
                start += 1
                continue
            if size - start < 5:
                break
            end = start + 1 + int.from_bytes(buffer[start + 1 : start + 5], "big")
            if end < start + 5:  # a length below 4 is not PostgreSQL: stop parsing
                self._passthrough = True
                break
            if size < end:
                break
            if buffer[start] == ord("C") and buffer[start + 5 : end] == _COMMIT_TAG:
                if proxy._take(Cut.BEFORE_COMMIT_REPLY):
                    return bytes(buffer[:start]), size, True
                if proxy._take(Cut.AFTER_COMMIT_REPLY):
                    return bytes(buffer[:end]), size, True
            start = end
        if self._passthrough:
            return bytes(buffer), size, False
        return bytes(buffer[:start]), start, False


def _cstring(data: bytes, offset: int) -> tuple[bytes, int]:
    """The NUL-terminated string at ``offset`` and the offset after it."""
    end = data.find(b"\x00", offset)
    if end < 0:
        return data[offset:], len(data)
    return data[offset:end], end + 1


def _is_commit_sql(query: bytes) -> bool:
    return query.strip().rstrip(b";").strip().upper() in (b"COMMIT", b"END", b"COMMIT WORK")


def _close(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
