"""The remote agent: serves this machine's CPU as a farm device over HTTP.

`adacomp farm agent --host 127.0.0.1 --port P --token-file F` on a board, a phone under Termux
or a lab machine. Binds to loopback unless told otherwise. Whoever can reach the port is not
trusted, so every bound is explicit and checked before the next step costs anything:

- at most `max_connections` connections are served at once (one thread each); one more is
  answered 503 at once, by the accepting thread, and closed: no thread, no wait;
- a client has `request_deadline_s` for its whole request, headers and body together (a
  watchdog shuts the socket down when it passes: trickling a byte at a time does not extend it);
- the request line and headers are read and the token (`Authorization: Bearer <token>`,
  compared in constant time) checked before any body is read; then the path, Content-Length
  (ASCII digits only) and the settings header; a body only ever comes after all of those;
- every error reply is JSON `{"error": ...}` and closes the connection, so an unread body can
  never be parsed as a next request;
- uploads are size-limited, must be self-contained ONNX (tensor data in external files is
  refused before onnx.checker, which would look for those files) and pass onnx.checker;
  nothing is ever unpickled;
- one measurement runs at a time (a second request gets 503 with Retry-After, the farm's lease
  queues on its side), pinned to the operator's cores (a client cannot choose them), within a
  bounded time (504 past it).

The log (stderr) has one line per request: client, method, path, status (or "dropped"), model
hash prefix, milliseconds and why; a refused connection is one line too; never a traceback.

Endpoints: GET /health -> {"ok", "device", "class", "runtime", "identity", "busy"};
POST /measure (body: ONNX bytes; header X-Adacomp-Settings: MeasureSettings JSON)
-> Measurement JSON. Errors -> {"error": "..."} with a 4xx/5xx status.
"""

from __future__ import annotations

import dataclasses
import hmac
import itertools
import json
import logging
import math
import re
import socket
import sys
import threading
import time
import traceback
from contextlib import suppress
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BufferedIOBase
from pathlib import Path
from typing import Any, cast

from pydantic import ValidationError

from adacomp.device_farm.agent_token import read_token
from adacomp.device_farm.devices._base import DeviceError, ModelRefused
from adacomp.device_farm.devices.host import HostDevice
from adacomp.device_farm.model import OnnxModel, load_checked
from adacomp.device_farm.settings import MeasureSettings
from adacomp.errors import AdacompError, first_line
from adacomp.yaml_config import describe_validation_error

log = logging.getLogger(__name__)

SETTINGS_HEADER = "X-Adacomp-Settings"
DEFAULT_MAX_MODEL_BYTES = 256 * 1024 * 1024
DEFAULT_REQUEST_DEADLINE_S = 120.0
DEFAULT_MAX_CONNECTIONS = 16
MAX_IDLE_S = 60.0  # the longest a connection may stay silent (also bounds writing a reply)
LINGER_S = 1.0  # after an error reply, how long (at most) unread input is drained...
LINGER_BYTES = 1024 * 1024  # ...and how much
_CONTENT_LENGTH = re.compile(r"[0-9]{1,15}")  # ASCII only: str.isdigit() also accepts "²"

# ---------------------------------------------------------------------------------------------
# Logging: one line per request or refused connection, on stderr.
# ---------------------------------------------------------------------------------------------

_log_lock = threading.Lock()


def _log(line: str) -> None:
    """One line on stderr, whole (threads never interleave), never raising."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with _log_lock, suppress(OSError, ValueError):
        sys.stderr.write(f"{stamp} {line}\n")
        sys.stderr.flush()


def _printable(text: str, limit: int = 120) -> str:
    """Client-supplied text made safe for a one-line log: no control or escape characters."""
    safe = "".join(
        char if char.isascii() and char.isprintable() else f"\\x{ord(char) & 0xFF:02x}" for char in text
    )
    return safe if len(safe) <= limit else safe[:limit] + "..."


# ---------------------------------------------------------------------------------------------
# Deadlines: one watchdog thread for all connections.
# ---------------------------------------------------------------------------------------------


class Deadlines:
    """Shuts down the socket of every request still being received past its deadline.

    A socket timeout only bounds the gap between two bytes: a client sending one byte every
    25 s kept a request (and its thread) alive for as long as it liked. Shutting the socket
    down from here wakes the handler's blocked read with end-of-file, whatever it was reading.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: dict[int, tuple[float, socket.socket]] = {}
        self._fired: set[int] = set()
        self._tickets = itertools.count()
        self._stopped = False
        self._thread = threading.Thread(target=self._watch, name="agent-deadlines", daemon=True)
        self._thread.start()

    def arm(self, sock: socket.socket, seconds: float) -> int:
        with self._cond:
            ticket = next(self._tickets)
            self._armed[ticket] = (time.monotonic() + seconds, sock)
            self._cond.notify()
            return ticket

    def disarm(self, ticket: int) -> bool:
        """Stop watching; True when the deadline had already passed (the socket is shut)."""
        with self._cond:
            self._armed.pop(ticket, None)
            fired = ticket in self._fired
            self._fired.discard(ticket)
            return fired

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _watch(self) -> None:
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                for ticket, (deadline, sock) in list(self._armed.items()):
                    if deadline <= now:
                        del self._armed[ticket]
                        self._fired.add(ticket)
                        # Under the lock: the handler disarms before its socket is closed, so
                        # this never reaches a closed (or reused) descriptor.
                        with suppress(OSError):
                            sock.shutdown(socket.SHUT_RDWR)
                soonest = min((deadline for deadline, _ in self._armed.values()), default=None)
                self._cond.wait(None if soonest is None else min(3600.0, max(0.0, soonest - now)))


# ---------------------------------------------------------------------------------------------
# The server and its handler.
# ---------------------------------------------------------------------------------------------


class AgentServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # listen backlog: a burst is accepted (and refused) rather than dropped

    def __init__(
        self,
        address: tuple[str, int],
        token: str,
        device: HostDevice,
        *,
        max_model_bytes: int = DEFAULT_MAX_MODEL_BYTES,
        request_timeout_s: float = 300.0,
        request_deadline_s: float = DEFAULT_REQUEST_DEADLINE_S,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        if not 0 < request_deadline_s < math.inf or max_connections < 1:
            raise AdacompError("the request deadline must be > 0 s and max connections >= 1")
        super().__init__(address, AgentHandler)
        self.token = token.encode()
        self.device = device
        self.device.timeout_s = request_timeout_s
        self.max_model_bytes = max_model_bytes
        self.request_deadline_s = request_deadline_s
        self.idle_timeout_s = min(MAX_IDLE_S, request_deadline_s)
        self.max_connections = max_connections
        self.busy = threading.Lock()
        self.deadlines = Deadlines()
        self._open = 0
        self._open_lock = threading.Lock()

    @property
    def open_connections(self) -> int:
        with self._open_lock:
            return self._open

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread for the connection if under the cap; else 503 from this thread, and close."""
        with self._open_lock:
            admitted = self._open < self.max_connections
            if admitted:
                self._open += 1
        if not admitted:
            self._refuse(request, client_address)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            with self._open_lock:
                self._open -= 1
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open -= 1

    def _refuse(self, request: socket.socket, client_address: Any) -> None:
        body = json.dumps(
            {"error": f"too many connections (this agent serves {self.max_connections} at once); retry later"}
        ).encode()
        reply = (
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"Retry-After: 1\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        with suppress(OSError):
            request.setblocking(False)  # never wait on this client: the accepting thread serves all
            with suppress(BlockingIOError):
                request.recv(65536)  # what already came: then close() sends FIN, not a reset
            request.send(reply)
        self.shutdown_request(request)
        _log(f"{_client(client_address)} refused: {self.max_connections} connections open (the cap)")

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One line instead of the default traceback (the handler catches what a client can
        cause; this is for our bugs, and says where)."""
        _, exc, tb = sys.exc_info()
        where = ""
        if tb is not None:
            frame = traceback.extract_tb(tb)[-1]
            where = f" at {Path(frame.filename).name}:{frame.lineno}"
        what = f"{type(exc).__name__}: {_printable(first_line(exc))}" if exc is not None else "unknown"
        _log(f"{_client(client_address)} internal error {what}{where}")

    def server_close(self) -> None:
        self.deadlines.stop()
        super().server_close()


class _LastLine:
    """A reader that remembers its last line: the stdlib's header parser takes end-of-file for
    the blank line that ends the headers, so a half-sent request would otherwise be answered
    (and logged) as if complete."""

    def __init__(self, rfile: BufferedIOBase) -> None:
        self.rfile = rfile
        self.last = b"\n"

    def readline(self, limit: int = -1) -> bytes:
        self.last = self.rfile.readline(limit)
        return self.last


def _client(address: Any) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else str(address)


class AgentHandler(BaseHTTPRequestHandler):
    server: AgentServer
    protocol_version = "HTTP/1.1"
    server_version = "adacomp-agent"
    sys_version = ""
    # Before the request line is parsed: replies to a malformed one still get a status line.
    default_request_version = "HTTP/1.0"

    # Per request, reset by _begin(); what the one log line says.
    _started: float
    _status: int | None
    _note: str
    _model: str
    _ticket: int | None
    _deadline_fired: bool
    _body_read: bool
    _expects_continue: bool
    _parsed: bool  # this request's headers were read (self.headers is not a previous request's)
    _quiet: bool  # the connection closed between requests: nothing to log
    _linger: bool  # an error reply went out: drain before closing (see _drain)

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.idle_timeout_s)  # the longest gap between two bytes
        self._linger = False

    def finish(self) -> None:
        super().finish()
        if self._linger:
            self._drain()

    def _drain(self) -> None:
        """After an error reply, end our side and drop what the client still sends, briefly.

        Closing a socket with unread input resets the connection, and the reset can reach the
        client before it has read the reply (a 413 would read as "connection reset"). Bounded:
        LINGER_S and LINGER_BYTES, and never longer than a blocked thread would be anyway.
        """
        with suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)
            end = time.monotonic() + LINGER_S
            drained = 0
            while drained < LINGER_BYTES and (left := end - time.monotonic()) > 0:
                self.connection.settimeout(left)
                chunk = self.connection.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)

    # --- one request -------------------------------------------------------------------------
    def handle_one_request(self) -> None:
        self._begin()
        self._ticket = self.server.deadlines.arm(self.connection, self.server.request_deadline_s)
        try:
            self._handle_one()
        except OSError as exc:  # reset, broken pipe, stalled past the idle timeout
            self.close_connection = True
            reason = (
                f"client silent for {self.server.idle_timeout_s:g} s"
                if isinstance(exc, TimeoutError)
                else f"connection lost ({type(exc).__name__})"
            )
            if self._status is not None:  # a reply was on its way: say which one was lost
                self._note = f"{self._note}; reply not delivered: {reason}" if self._note else reason
            else:
                self._dropped(reason)
        except Exception as exc:  # our bug: the client hears 500 if it can, the log one line
            self.close_connection = True
            if self._status is None:
                with suppress(OSError):
                    self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")
            self._status = int(HTTPStatus.INTERNAL_SERVER_ERROR)
            self._note = f"internal error {type(exc).__name__}: {first_line(exc)}"
        finally:
            if self._end_deadline():
                self.close_connection = True
                deadline = f"{self.server.request_deadline_s:g} s deadline"
                self._dropped(
                    f"request not complete within the {deadline}"
                    if self.raw_requestline
                    else f"no request within the {deadline}; idle connection closed"
                )
            if not self._body_read and self._has_body():
                self.close_connection = True  # its body is unread: it must not become a request
            self._write_log()

    def _handle_one(self) -> None:
        self.raw_requestline = self.rfile.readline(65537)
        if not self.raw_requestline:
            self.close_connection = True  # closed between requests: nothing to log
            self._quiet = True
            return
        if not self.raw_requestline.endswith(b"\n"):
            self.close_connection = True
            if len(self.raw_requestline) > 65536:
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long")
            else:
                self._dropped("connection closed in the request line")
            return
        if not self.parse_request():
            return
        handler = getattr(self, f"do_{self.command}", None)
        if handler is None:
            self.send_error(
                HTTPStatus.NOT_IMPLEMENTED,
                f"method {_printable(self.command or '')!r} is not supported; "
                "use GET /health or POST /measure",
            )
            return
        handler()
        self.wfile.flush()

    def _begin(self) -> None:
        self._started = time.monotonic()
        self._status = None
        self._note = ""
        self._model = "-"
        self._ticket = None
        self._deadline_fired = False
        self._body_read = False
        self._expects_continue = False
        self._quiet = False
        self._parsed = False
        self.raw_requestline = b""
        self.command = ""
        self.path = ""
        self.request_version = self.default_request_version
        self.requestline = ""

    def _end_deadline(self) -> bool:
        """Stop the request's deadline (its body is in, or it is over); True if it had passed."""
        if self._ticket is not None:
            self._deadline_fired = self.server.deadlines.disarm(self._ticket)
            self._ticket = None
        return self._deadline_fired

    def _has_body(self) -> bool:
        if not self._parsed:
            return False
        length = str(self.headers.get("Content-Length", "0")).strip()
        return self.headers.get("Transfer-Encoding") is not None or length not in ("", "0")

    def _dropped(self, reason: str) -> None:
        self._quiet = False
        self._status = None
        self._note = reason

    def _write_log(self) -> None:
        if self._quiet and self._status is None and not self._deadline_fired:
            return
        ms = (time.monotonic() - self._started) * 1000
        status = str(self._status) if self._status is not None else "dropped"
        method = _printable(self.command or "-", 16)
        path = _printable(self.path or "-", 80)
        note = f": {_printable(self._note, 240)}" if self._note else ""
        _log(f"{_client(self.client_address)} {method} {path} {status} model={self._model} {ms:.0f} ms{note}")

    # --- parsing -----------------------------------------------------------------------------
    def parse_request(self) -> bool:
        """The stdlib's parsing, less HTTP/0.9 (a reply without a status line or headers)."""
        words = self.raw_requestline.split()
        if len(words) != 3:
            self.requestline = _printable(self.raw_requestline.decode("latin-1").rstrip("\r\n"))
            self.close_connection = True
            self.send_error(HTTPStatus.BAD_REQUEST, "malformed request line; expected METHOD PATH HTTP/1.1")
            return False
        reader = _LastLine(self.rfile)
        self.rfile = cast(BufferedIOBase, reader)  # only parse_headers' readline() runs meanwhile
        try:
            parsed = super().parse_request()
        finally:
            self.rfile = reader.rfile
        if parsed and reader.last == b"":  # the headers ended because the connection did
            self.close_connection = True
            self._dropped("connection closed in the headers")
            return False
        self._parsed = parsed
        return parsed

    def handle_expect_100(self) -> bool:
        """Say 100 Continue only once the headers passed every check (see do_POST)."""
        self._expects_continue = True
        return True

    # --- replies -----------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:
        pass  # the one line per request is _write_log's

    def _send(self, status: HTTPStatus, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self._status = int(status)
        self._quiet = False
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: HTTPStatus, message: str, headers: dict[str, str] | None = None) -> None:
        """Every error reply: JSON, and the connection closed (its body may be unread)."""
        self.close_connection = True
        self._linger = True
        self._note = message
        self._send(status, {"error": message}, {**(headers or {}), "Connection": "close"})

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's own refusals (bad request line, too many headers...) as JSON too."""
        status = HTTPStatus(code)
        self._error(status, message or status.phrase)

    def _authorised(self) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, supplied = header.partition(" ")
        if scheme != "Bearer" or not hmac.compare_digest(supplied.strip().encode(), self.server.token):
            self._error(HTTPStatus.UNAUTHORIZED, "missing or wrong token", {"WWW-Authenticate": "Bearer"})
            return False
        return True

    def _content_length(self) -> int | None:
        values = self.headers.get_all("Content-Length") or []
        if self.headers.get("Transfer-Encoding") is not None:
            self._error(HTTPStatus.LENGTH_REQUIRED, "chunked uploads are not supported; send Content-Length")
            return None
        if not values:
            self._error(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
            return None
        text = values[0].strip(" \t")
        if len(values) > 1 or not _CONTENT_LENGTH.fullmatch(text):
            self._error(HTTPStatus.BAD_REQUEST, "Content-Length must be one number of bytes (digits 0-9)")
            return None
        return int(text)

    # --- endpoints ---------------------------------------------------------------------------
    def do_GET(self) -> None:
        if not self._authorised():
            return
        if self.path != "/health":
            self._error(
                HTTPStatus.NOT_FOUND, f"no such endpoint {_printable(self.path)!r}; use /health or /measure"
            )
            return
        device = self.server.device
        self._send(
            HTTPStatus.OK,
            {
                "ok": True,
                "device": device.name,
                "class": device.device_class,
                "runtime": device.runtime(),
                "identity": device.identity(),
                "busy": self.server.busy.locked(),
            },
        )

    def do_POST(self) -> None:
        # Everything the headers can decide, before a byte of the body is read.
        if not self._authorised():
            return
        if self.path != "/measure":
            self._error(
                HTTPStatus.NOT_FOUND, f"no such endpoint {_printable(self.path)!r}; use POST /measure"
            )
            return
        size = self._content_length()
        if size is None:
            return
        if size > self.server.max_model_bytes:
            self._error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"model is {size} bytes; this agent accepts at most {self.server.max_model_bytes}",
            )
            return
        try:
            settings = MeasureSettings.model_validate_json(self.headers.get(SETTINGS_HEADER) or "{}")
        except ValidationError as exc:
            self._error(HTTPStatus.BAD_REQUEST, f"bad {SETTINGS_HEADER}: {describe_validation_error(exc)}")
            return
        if self.server.busy.locked():
            self._busy()
            return
        if self._expects_continue:
            self.send_response_only(HTTPStatus.CONTINUE)
            self.end_headers()

        body = self.rfile.read(size)
        self._body_read = True
        if self._end_deadline():
            return  # handle_one_request logs the deadline
        if len(body) < size:
            self.close_connection = True
            self._dropped(f"body ended after {len(body)} of {size} bytes; not measured")
            return
        model = OnnxModel(body)
        self._model = model.sha256[:12]
        try:
            load_checked(body, "upload")
        except AdacompError as exc:
            self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, str(exc))
            return
        settings, overridden = self._operator_cores(settings)
        if not self.server.busy.acquire(blocking=False):
            self._busy()
            return
        try:
            measurement = self.server.device.measure(model, settings)
        except ModelRefused as exc:  # the model's problem, not the agent's: the farm keeps the device
            self._error(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc))
            return
        except DeviceError as exc:
            status = (
                HTTPStatus.GATEWAY_TIMEOUT if "timed out" in str(exc) else HTTPStatus.INTERNAL_SERVER_ERROR
            )
            self._error(status, str(exc))
            return
        finally:
            self.server.busy.release()
        if overridden:
            measurement = dataclasses.replace(measurement, notes=f"{measurement.notes}; {overridden}")
        self._send(HTTPStatus.OK, measurement.to_dict())
        self._note = f"median {measurement.latency.median_ms:.3f} ms"

    def _busy(self) -> None:
        self._error(HTTPStatus.SERVICE_UNAVAILABLE, "busy: one measurement at a time", {"Retry-After": "1"})

    def _operator_cores(self, settings: MeasureSettings) -> tuple[MeasureSettings, str]:
        """The operator's `--cores` win: which cores of this machine measure is its owner's
        choice (they may be reserved away from other work). A client's `cores` is dropped,
        and the measurement's notes say so; which cores were used is in the notes either way
        (`cores [...]`). Not in Measurement.settings: that is the store's cache key, which the
        farm looks up with the settings it sent."""
        if settings.cores is None:
            return settings, ""
        asked = list(settings.cores)
        own = list(self.server.device.cores) if self.server.device.cores else "any (the OS chooses)"
        return (
            settings.model_copy(update={"cores": None}),
            f"the client asked for cores {asked}; this agent measures on its operator's cores: {own}",
        )


def serve(
    host: str,
    port: int,
    token_file: Path,
    *,
    name: str = "agent",
    device_class: str = "host",
    cores: tuple[int, ...] | None = None,
    max_model_bytes: int = DEFAULT_MAX_MODEL_BYTES,
    request_timeout_s: float = 300.0,
    request_deadline_s: float = DEFAULT_REQUEST_DEADLINE_S,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ready: threading.Event | None = None,
) -> None:
    token = read_token(token_file)
    device = HostDevice(name, device_class, cores=cores)
    try:
        server = AgentServer(
            (host, port),
            token,
            device,
            max_model_bytes=max_model_bytes,
            request_timeout_s=request_timeout_s,
            request_deadline_s=request_deadline_s,
            max_connections=max_connections,
        )
    except OSError as exc:
        raise AdacompError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    bound_host, bound_port = server.server_address[:2]
    print(
        f"adacomp agent {name!r} ({device_class}) listening on http://{bound_host!s}:{bound_port}", flush=True
    )
    if ready is not None:
        ready.set()
    try:
        server.serve_forever()
    finally:
        server.server_close()
