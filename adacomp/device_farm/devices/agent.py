"""A remote device reached through its agent over HTTP (see `agent_server`).

The token is read with the agent's own `read_token`, so both sides accept exactly the same
files; a bad one is a one-line error that names the file and never shows its content. The
agent is a remote party too: whatever it answers ends in a Measurement or a one-line
DeviceError, never a traceback.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

from adacomp.device_farm.agent_server import SETTINGS_HEADER
from adacomp.device_farm.agent_token import check_token, read_token
from adacomp.device_farm.devices._base import Device, DeviceError, Health, ModelRefused
from adacomp.device_farm.measurement import Measurement
from adacomp.device_farm.model import OnnxModel
from adacomp.device_farm.settings import MeasureSettings
from adacomp.errors import AdacompError

MAX_REPLY_BYTES = 16 * 1024 * 1024  # a Measurement is a few KiB; more is not an agent talking
# What the agent answers for a model it refuses while working well (too large for its limit, not
# ONNX, not a graph its runtime runs): the farm fails that model alone (`ModelRefused`).
MODEL_REFUSED_STATUSES = frozenset({413, 415, 422})
MAX_IDENTITY_CHARS = 500  # a CPU, its flags, cores and runtime; more is not an identity


class AgentDevice(Device):
    kind = "agent"

    def __init__(
        self,
        name: str,
        device_class: str,
        *,
        url: str,
        token_file: Path | None = None,
        token: str | None = None,
        timeout_s: float = 300.0,
    ) -> None:
        super().__init__(name, device_class)
        self.url = url.rstrip("/")
        try:
            if token is not None:
                token = check_token(token, "the token", min_chars=1)  # the agent judges its length
            elif token_file is not None:
                token = read_token(token_file)
            else:
                raise DeviceError("an agent needs a token or token_file")
        except AdacompError as exc:  # a config error: one line, naming the device and the file
            raise DeviceError(f"device {name!r}: {exc}") from None
        self._token = token
        self.timeout_s = timeout_s
        self._identity = ""  # what the agent says it runs on, once it has said

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        request = urllib.request.Request(
            self.url + path,
            data=body,
            method=method,
            headers={"Authorization": f"Bearer {self._token}", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout_s) as response:
                data = response.read(MAX_REPLY_BYTES + 1)
        except urllib.error.HTTPError as exc:
            try:
                error = json.loads(exc.read(MAX_REPLY_BYTES))
                reason = error.get("error", exc.reason) if isinstance(error, dict) else exc.reason
            except (ValueError, OSError, http.client.HTTPException):
                reason = exc.reason
            reason = str(reason).strip().splitlines()[0] if str(reason).strip() else exc.code
            refused = ModelRefused if exc.code in MODEL_REFUSED_STATUSES else DeviceError
            raise refused(f"device {self.name!r}: agent answered {exc.code}: {reason}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise DeviceError(f"device {self.name!r}: agent at {self.url} unreachable: {reason}") from None
        if len(data) > MAX_REPLY_BYTES:
            raise DeviceError(f"device {self.name!r}: agent sent a reply over {MAX_REPLY_BYTES} bytes")
        try:
            payload = json.loads(data)
        except ValueError:  # not JSON, or not UTF-8
            raise DeviceError(f"device {self.name!r}: agent sent a reply that is not JSON") from None
        if not isinstance(payload, dict):
            raise DeviceError(f"device {self.name!r}: agent sent a reply that is not a JSON object")
        return payload

    def health(self) -> Health:
        try:
            reply = self._request("GET", "/health", timeout=5)
        except DeviceError as exc:
            return Health(False, str(exc))
        said = reply.get("identity")
        if isinstance(said, str) and said.isprintable() and len(said) <= MAX_IDENTITY_CHARS:
            self._identity = said
        return Health(
            bool(reply.get("ok")), f"{reply.get('runtime')}{' (busy)' if reply.get('busy') else ''}"
        )

    def identity(self) -> str:
        """The agent's machine as it describes itself (asked once; "" while it cannot be asked)."""
        if not self._identity:
            self.health()
        return self._identity

    def runtime(self) -> str:
        return f"agent {self.url}"

    def measure(self, model: OnnxModel, settings: MeasureSettings) -> Measurement:
        reply = self._request(
            "POST",
            "/measure",
            body=model.data,
            headers={"Content-Type": "application/octet-stream", SETTINGS_HEADER: settings.model_dump_json()},
        )
        try:
            remote = Measurement.from_dict(reply)
        except (TypeError, ValueError, KeyError) as exc:
            raise DeviceError(f"device {self.name!r}: agent sent a malformed measurement ({exc})") from None
        if remote.model_hash != model.sha256:
            raise DeviceError(f"device {self.name!r}: agent measured a different model (hash mismatch)")
        if remote.identity and remote.identity.isprintable() and len(remote.identity) <= MAX_IDENTITY_CHARS:
            self._identity = remote.identity
        # The farm's names win: the agent knows itself by its own name; the identity is the
        # agent's own, as its health said (what the store keys the measurement by).
        return replace(remote, device=self.name, device_class=self.device_class, identity=self._identity)
