"""A remote device reached through its agent over HTTP (see `agent_server`)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

from adacomp.device_farm.agent_server import SETTINGS_HEADER, read_token
from adacomp.device_farm.devices._base import Device, DeviceError, Health
from adacomp.device_farm.measurement import Measurement
from adacomp.device_farm.model import OnnxModel
from adacomp.device_farm.settings import MeasureSettings


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
        if token is None:
            if token_file is None:
                raise DeviceError(f"device {name!r}: an agent needs a token or token_file")
            token = read_token(token_file)
        self._token = token
        self.timeout_s = timeout_s

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
                payload: dict[str, Any] = json.loads(response.read())
                return payload
        except urllib.error.HTTPError as exc:
            try:
                reason = json.loads(exc.read()).get("error", exc.reason)
            except (json.JSONDecodeError, OSError):
                reason = exc.reason
            raise DeviceError(f"device {self.name!r}: agent answered {exc.code}: {reason}") from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DeviceError(f"device {self.name!r}: agent at {self.url} unreachable: {reason}") from None
        except json.JSONDecodeError:
            raise DeviceError(f"device {self.name!r}: agent sent a reply that is not JSON") from None

    def health(self) -> Health:
        try:
            reply = self._request("GET", "/health", timeout=5)
        except DeviceError as exc:
            return Health(False, str(exc))
        return Health(
            bool(reply.get("ok")), f"{reply.get('runtime')}{' (busy)' if reply.get('busy') else ''}"
        )

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
        # The farm's names win: the agent knows itself by its own name.
        return replace(remote, device=self.name, device_class=self.device_class)
