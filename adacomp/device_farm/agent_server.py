"""The remote agent: serves this machine's CPU as a farm device over HTTP.

`adacomp farm agent --host 127.0.0.1 --port P --token-file F` on a board, a phone under Termux
or a lab machine. Every request needs `Authorization: Bearer <token>` (compared in constant
time); uploads are size-limited and must be ONNX that passes onnx.checker (nothing is ever
unpickled); one measurement runs at a time (a second request gets 503 with Retry-After, the
farm's lease queues on its side); each measurement has a bounded time (504 past it). Binds to
loopback unless told otherwise.

Endpoints: GET /health -> {"ok", "device", "class", "runtime", "busy"};
POST /measure (body: ONNX bytes; header X-Adacomp-Settings: MeasureSettings JSON)
-> Measurement JSON. Errors -> {"error": "..."} with a 4xx/5xx status.
"""

from __future__ import annotations

import hmac
import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from adacomp.device_farm.devices._base import DeviceError
from adacomp.device_farm.devices.host import HostDevice
from adacomp.device_farm.model import OnnxModel, load_checked
from adacomp.device_farm.settings import MeasureSettings
from adacomp.errors import AdacompError
from adacomp.yaml_config import describe_validation_error

SETTINGS_HEADER = "X-Adacomp-Settings"
DEFAULT_MAX_MODEL_BYTES = 256 * 1024 * 1024


def read_token(path: str | Path) -> str:
    path = Path(path)
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise AdacompError(f"token file {str(path)!r} cannot be read: {exc.strerror}") from None
    if len(token) < 16:
        raise AdacompError(f"token file {str(path)!r}: the token must be at least 16 characters")
    return token


class AgentServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        token: str,
        device: HostDevice,
        *,
        max_model_bytes: int = DEFAULT_MAX_MODEL_BYTES,
        request_timeout_s: float = 300.0,
    ) -> None:
        super().__init__(address, AgentHandler)
        self.token = token.encode()
        self.device = device
        self.device.timeout_s = request_timeout_s
        self.max_model_bytes = max_model_bytes
        self.busy = threading.Lock()


class AgentHandler(BaseHTTPRequestHandler):
    server: AgentServer
    timeout = 60  # seconds a client may take to send its request (slow uploads end here)
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet by default; the CLI prints one line per measurement instead

    def _send(self, status: HTTPStatus, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: HTTPStatus, message: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, {"error": message}, headers)

    def _authorised(self) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, supplied = header.partition(" ")
        if scheme != "Bearer" or not hmac.compare_digest(supplied.strip().encode(), self.server.token):
            self._error(HTTPStatus.UNAUTHORIZED, "missing or wrong token", {"WWW-Authenticate": "Bearer"})
            return False
        return True

    def do_GET(self) -> None:
        if not self._authorised():
            return
        if self.path != "/health":
            self._error(HTTPStatus.NOT_FOUND, f"no such endpoint {self.path!r}; use /health or /measure")
            return
        device = self.server.device
        self._send(
            HTTPStatus.OK,
            {
                "ok": True,
                "device": device.name,
                "class": device.device_class,
                "runtime": device.runtime(),
                "busy": self.server.busy.locked(),
            },
        )

    def do_POST(self) -> None:
        if not self._authorised():
            self.close_connection = True
            return
        if self.path != "/measure":
            self._error(HTTPStatus.NOT_FOUND, f"no such endpoint {self.path!r}; use POST /measure")
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._error(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
            return
        size = int(length)
        if size > self.server.max_model_bytes:
            self.close_connection = True  # do not read a body we refuse
            self._error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"model is {size} bytes; this agent accepts at most {self.server.max_model_bytes}",
            )
            return
        body = self.rfile.read(size)
        try:
            settings = MeasureSettings.model_validate_json(self.headers.get(SETTINGS_HEADER) or "{}")
        except ValidationError as exc:
            self._error(HTTPStatus.BAD_REQUEST, f"bad {SETTINGS_HEADER}: {describe_validation_error(exc)}")
            return
        try:
            load_checked(body, "upload")
        except AdacompError as exc:
            self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, str(exc))
            return
        if not self.server.busy.acquire(blocking=False):
            self._error(
                HTTPStatus.SERVICE_UNAVAILABLE, "busy: one measurement at a time", {"Retry-After": "1"}
            )
            return
        try:
            measurement = self.server.device.measure(OnnxModel(body), settings)
        except DeviceError as exc:
            status = (
                HTTPStatus.GATEWAY_TIMEOUT if "timed out" in str(exc) else HTTPStatus.INTERNAL_SERVER_ERROR
            )
            self._error(status, str(exc))
            return
        finally:
            self.server.busy.release()
        self._send(HTTPStatus.OK, measurement.to_dict())


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
    ready: threading.Event | None = None,
) -> None:
    token = read_token(token_file)
    device = HostDevice(name, device_class, cores=cores)
    try:
        server = AgentServer(
            (host, port), token, device, max_model_bytes=max_model_bytes, request_timeout_s=request_timeout_s
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
