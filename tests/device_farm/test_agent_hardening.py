"""The agent against hostile or careless input: a real `adacomp farm agent` process on loopback,
driven by raw sockets where the bytes matter.

Limits are set small on the command line (a 3 s request deadline, a cap of 4 connections) so
every attack ends in seconds; every wait has a generous bound, for a busy 2-core machine.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from adacomp.device_farm import DeviceError, OnnxModel
from adacomp.device_farm.devices.agent import AgentDevice
from adacomp.platform.cli.main import main
from tests.helpers.agent_process import QUICK, TOKEN, Agent

DEADLINE_S = 3.0
AUTH = f"Authorization: Bearer {TOKEN}\r\n".encode()
SECRET = "S3cretT0ken-AAAA"
TWO_LINES = f"{SECRET}\n# rotated: old-token-DDDD\n"
CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]


# --- helpers ---------------------------------------------------------------------------------


def wait_for(check: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def wait_for_log(agent: Agent, pattern: str, timeout: float = 15.0) -> str:
    """The agent's log line matching `pattern` (it is written just after the reply is sent)."""
    found: list[str] = []

    def check() -> bool:
        found[:] = [line for line in agent.log().splitlines() if re.search(pattern, line)]
        return bool(found)

    try:
        wait_for(check, timeout, f"log line {pattern!r}")
    except AssertionError:
        raise AssertionError(f"no log line matches {pattern!r}; log:\n{agent.log()}") from None
    return found[0]


def read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def exchange(port: int, data: bytes, *, end_input: bool = False, timeout: float = 20.0) -> bytes:
    """Send `data` (then end our side if `end_input`) and read until the agent closes: the
    socket timeout fails the test if it never does."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if end_input:
            sock.shutdown(socket.SHUT_WR)
        return read_until_closed(sock)


def responses(stream: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Every HTTP response in `stream`: (status, headers lower-cased, body)."""
    found = []
    while stream:
        head, sep, rest = stream.partition(b"\r\n\r\n")
        assert sep, f"incomplete response: {stream[:200]!r}"
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        found.append((status, headers, rest[:length]))
        stream = rest[length:]
    return found


def one_json_error(stream: bytes) -> tuple[int, str]:
    """The one reply in `stream`, which must be a JSON error that closes the connection."""
    replies = responses(stream)
    assert len(replies) == 1, f"expected one reply, got {[r[0] for r in replies]}: {stream[:300]!r}"
    status, headers, body = replies[0]
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    error = json.loads(body)["error"]
    assert isinstance(error, str) and error
    return status, error


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no thread count")


def health_status(agent: Agent, timeout: float = 20.0) -> int:
    """GET /health as a well-behaved client; the status, or 0 when the connection was reset."""
    connection = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=timeout)
    try:
        connection.request("GET", "/health", headers={"Authorization": f"Bearer {TOKEN}"})
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        connection.close()


def external_data_model(location: str) -> bytes:
    """A valid MatMul whose weight lives in the file `location` (next to the model)."""
    weight = numpy_helper.from_array(np.ones((4, 4), dtype=np.float32), "W")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    entry = weight.external_data.add()
    entry.key, entry.value = "location", location
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def post(model: bytes, *, path: str = "/measure", extra: bytes = b"", length: int | None = None) -> bytes:
    size = len(model) if length is None else length
    return (
        f"POST {path} HTTP/1.1\r\nHost: agent\r\n".encode()
        + AUTH
        + extra
        + (f"Content-Length: {size}\r\n\r\n".encode() + model)
    )


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    """One agent for the tests that leave it as they found it: a 3 s deadline, 1 MB uploads,
    pinned by its operator to one core, and a token file its group may read (it warns)."""
    tmp = tmp_path_factory.mktemp("agent")
    agent = Agent(
        tmp,
        "--max-model-mb",
        "1",
        "--request-deadline",
        str(DEADLINE_S),
        "--cores",
        str(CORES[0]),
        cwd=tmp,
        token_mode=0o640,
    )
    yield agent
    agent.stop()


# --- 1. the token file -----------------------------------------------------------------------


def test_agent_refuses_a_two_line_token_file_without_showing_it(tmp_path: Path) -> None:
    token_file = tmp_path / "two.token"
    token_file.write_text(TWO_LINES)
    token_file.chmod(0o600)
    done = subprocess.run(
        [sys.executable, "-m", "adacomp", "farm", "agent", "--port", "0", "--token-file", str(token_file)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1
    assert str(token_file) in done.stderr and "2 lines" in done.stderr
    for piece in (SECRET, "S3cret", "old-token", "rotated"):
        assert piece not in done.stderr


def test_client_refuses_a_two_line_token_file_without_showing_it(tmp_path: Path) -> None:
    token_file = tmp_path / "two.token"
    token_file.write_text(TWO_LINES)
    token_file.chmod(0o600)
    config = tmp_path / "f.yaml"
    config.write_text(
        "devices:\n"
        f"  - {{name: pi, kind: agent, class: rpi4, url: 'http://127.0.0.1:9', token_file: '{token_file}'}}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "adacomp", "farm", "list", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert "device 'pi'" in done.stderr and str(token_file) in done.stderr
    for piece in (SECRET, "S3cret", "old-token", "rotated"):
        assert piece not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (TWO_LINES, "2 lines"),
        (f"{SECRET} BBBB\n", "space, a control or a non-ASCII"),
        (f"{SECRET}\tBBBB", "space, a control or a non-ASCII"),
        (f"{SECRET}\x07BBBB", "space, a control or a non-ASCII"),
        (f"{SECRET}\rBBBB", "space, a control or a non-ASCII"),
        (f"\ufeff{SECRET}", "space, a control or a non-ASCII"),  # a byte-order mark
        (f"{SECRET}-Ä", "space, a control or a non-ASCII"),
        (" \n\t\n", "is empty"),
        ("S3cret-short", "at least 16 characters"),
    ],
)
def test_both_sides_refuse_the_same_token_files_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, reason: str
) -> None:
    token_file = tmp_path / "bad.token"
    token_file.write_text(content, encoding="utf-8")
    token_file.chmod(0o600)
    assert main(["farm", "agent", "--port", "0", "--token-file", str(token_file)]) == 2
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1 and reason in captured.err
    assert str(token_file) in captured.err and "S3cret" not in captured.out + captured.err
    with pytest.raises(DeviceError) as refused:
        AgentDevice("pi", "rpi4", url="http://127.0.0.1:9", token_file=token_file)
    message = str(refused.value)
    assert "\n" not in message and reason in message and "S3cret" not in message


def test_a_token_file_others_can_read_is_warned_about_on_both_sides(
    tmp_path: Path, shared: Agent, caplog: pytest.LogCaptureFixture
) -> None:
    warning = wait_for_log(shared, r"token file .* group or others")
    assert "chmod 600" in warning and "0o640" in warning and TOKEN not in shared.log()
    assert len([line for line in shared.log().splitlines() if "token file" in line]) == 1

    private, public = tmp_path / "private", tmp_path / "public"
    for path, mode in ((private, 0o600), (public, 0o644)):
        path.write_text(TOKEN + "\n")
        path.chmod(mode)
    with caplog.at_level(logging.WARNING):
        AgentDevice("a", "rpi4", url=shared.url, token_file=private)
        assert not caplog.records
        AgentDevice("b", "rpi4", url=shared.url, token_file=public)
    (record,) = caplog.records
    assert str(public) in record.getMessage() and "chmod 600" in record.getMessage()
    assert TOKEN not in record.getMessage()


# --- 2. per-request limits -------------------------------------------------------------------


def test_a_trickled_request_is_cut_at_the_deadline(shared: Agent) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: agent\r\n" + AUTH + b"\r\n"  # ~80 bytes: 20 s at 4/s
    received = b""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", shared.port), timeout=30) as sock:
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            readable, _, _ = select.select([sock], [], [], 0.25)
            if readable:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    break
                received += chunk
                if not chunk:
                    break
    elapsed = time.monotonic() - started
    assert received == b"", received  # cut, never answered
    assert DEADLINE_S - 0.5 <= elapsed <= DEADLINE_S + 8, elapsed
    wait_for_log(shared, rf"dropped .*not complete within the {DEADLINE_S:g} s deadline")
    assert health_status(shared) == 200


def test_connections_past_the_cap_are_refused_without_a_thread_each(tmp_path: Path) -> None:
    cap, attackers = 4, 40
    agent = Agent(tmp_path, "--max-connections", str(cap), "--request-deadline", "60")
    sockets: list[socket.socket] = []
    try:
        time.sleep(0.3)
        idle_threads = threads(agent.process.pid)  # no connection yet: none holds a slot
        for _ in range(attackers):  # half-sent, unauthenticated
            sock = socket.create_connection(("127.0.0.1", agent.port), timeout=20)
            sock.sendall(b"POST /measure HTTP/1.1\r\nHost: agent\r\nContent-Length: 10\r\n")
            sockets.append(sock)
        answered: dict[socket.socket, bytes] = {}

        def refusals() -> bool:
            pending = [s for s in sockets if s not in answered]
            readable, _, _ = select.select(pending, [], [], 0.2)
            for sock in readable:
                try:
                    answered[sock] = sock.recv(65536)
                except ConnectionResetError:
                    answered[sock] = b""
            return len(answered) >= attackers - cap

        wait_for(refusals, 30, "the connections past the cap to be refused")
        time.sleep(0.5)
        refusals()
        assert len(answered) == attackers - cap  # the first `cap` wait for their headers
        assert all(reply == b"" or reply.startswith(b"HTTP/1.1 503 ") for reply in answered.values())
        assert any(b"too many connections" in reply for reply in answered.values())
        assert threads(agent.process.pid) <= idle_threads + cap + 1
        started = time.monotonic()  # a good client meanwhile: turned away at once, not left waiting
        assert health_status(agent) in (503, 0) and time.monotonic() - started < 10
        checks = 2

        for sock in sockets:
            sock.close()
        sockets.clear()

        def serves_again() -> bool:
            nonlocal checks
            checks += 1
            return health_status(agent) == 200

        wait_for(serves_again, 30, "the agent to serve again")
        wait_for(lambda: agent.log().count("connection closed in the headers") == cap, 15, "the drop lines")
        log = agent.log()
        assert "Traceback" not in log
        lines = [line for line in log.splitlines() if "127.0.0.1" in line]
        dropped = [line for line in lines if "connection closed in the headers" in line]
        refused = [line for line in lines if "refused" in line]
        assert len(dropped) == cap and len(refused) >= attackers - cap
        assert len(lines) <= attackers + checks  # at most one line each, plus the good client's
    finally:
        for sock in sockets:
            sock.close()
        agent.stop()


def test_headers_are_checked_before_the_body_is_read(shared: Agent) -> None:
    """A 1 MB-limited agent answers a 2 GB upload with a wrong token at once: it never waits
    for (or reads) the body."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", shared.port), timeout=20) as sock:
        sock.sendall(b"POST /measure HTTP/1.1\r\nAuthorization: Bearer wrong-wrong-wrong-wrong\r\n")
        sock.sendall(b"Content-Length: 2000000000\r\n\r\n" + b"\0" * 1000)
        status, error = one_json_error(read_until_closed(sock))
    assert status == 401 and error == "missing or wrong token" and time.monotonic() - started < DEADLINE_S


# --- 3. protocol details ---------------------------------------------------------------------


def test_a_body_shorter_than_its_length_is_not_measured(shared: Agent, onnx_model: OnnxModel) -> None:
    # A whole, valid model, but announced 10 bytes longer: the client closes early.
    received = exchange(shared.port, post(onnx_model.data, length=onnx_model.size + 10), end_input=True)
    assert received == b""
    line = wait_for_log(shared, rf"body ended after {onnx_model.size} of {onnx_model.size + 10} bytes")
    assert " dropped " in line and "not measured" in line


@pytest.mark.parametrize("length", ["²", "٣", "+5", "0x10", "1_0", "-1", "", "1 2", "9" * 16])
def test_content_length_must_be_ascii_digits(shared: Agent, length: str) -> None:
    request = (
        b"POST /measure HTTP/1.1\r\n" + AUTH + b"Content-Length: " + length.encode() + b"\r\n\r\n" + b"x" * 5
    )
    status, error = one_json_error(exchange(shared.port, request))
    assert status == 400 and "Content-Length" in error


SMUGGLED = b"GET /health HTTP/1.1\r\nHost: agent\r\n" + AUTH + b"\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (post(SMUGGLED, path="/nope"), 404),
        (post(SMUGGLED, length=2 * 1024 * 1024), 413),
        (post(SMUGGLED, extra=b'X-Adacomp-Settings: {"min_runs": -3}\r\n'), 400),
        (post(SMUGGLED).replace(AUTH, b"Authorization: Bearer wrong-wrong-wrong-wrong\r\n"), 401),
        (
            b"POST /measure HTTP/1.1\r\n"
            + AUTH
            + b"Transfer-Encoding: chunked\r\n\r\n"
            + f"{len(SMUGGLED):x}\r\n".encode()
            + SMUGGLED
            + b"\r\n0\r\n\r\n",
            411,
        ),
        (b"POST /measure HTTP/1.1\r\n" + AUTH + b"\r\n" + SMUGGLED, 411),
    ],
    ids=["404", "413", "400", "401", "411-chunked", "411-no-length"],
)
def test_an_error_reply_closes_the_connection_so_an_unread_body_is_no_request(
    shared: Agent, request_bytes: bytes, expected: int
) -> None:
    status, _ = one_json_error(exchange(shared.port, request_bytes))
    assert status == expected


def test_a_get_with_a_body_is_answered_once_and_closed(shared: Agent) -> None:
    request = b"GET /health HTTP/1.1\r\n" + AUTH + f"Content-Length: {len(SMUGGLED)}\r\n\r\n".encode()
    replies = responses(exchange(shared.port, request + SMUGGLED))
    assert [status for status, _, _ in replies] == [200]


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (b"PUT /measure HTTP/1.1\r\n" + AUTH + b"\r\n", 501),
        (b"DELETE /health HTTP/1.1\r\n" + AUTH + b"\r\n", 501),
        (b"BREW /pot HTTP/1.1\r\n\r\n", 501),
        (b"HEAD /health HTTP/1.1\r\n\r\n", 501),
        (b"garbage\r\n\r\n", 400),
        (b"GET /health\r\n\r\n", 400),  # HTTP/0.9: a reply without a status line
        (b"GET /health HTTP/1.x\r\n\r\n", 400),
        (b"GET /health HTTP/9.9\r\n\r\n", 505),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET /health HTTP/1.1\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (b"GET /health HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(120)) + b"\r\n", 431),
    ],
    ids=[
        "PUT",
        "DELETE",
        "BREW",
        "HEAD",
        "garbage",
        "http0.9",
        "bad-version",
        "http9",
        "long-line",
        "long-header",
        "many-headers",
    ],
)
def test_every_error_reply_is_json(shared: Agent, request_bytes: bytes, expected: int) -> None:
    status, _ = one_json_error(exchange(shared.port, request_bytes))
    assert status == expected


def test_the_operators_cores_win_and_each_measurement_is_one_log_line(
    shared: Agent, onnx_model: OnnxModel
) -> None:
    device = AgentDevice("pi", "rpi4", url=shared.url, token=TOKEN)
    measurement = device.measure(onnx_model, QUICK.model_copy(update={"cores": (CORES[-1],)}))
    assert f"cores [{CORES[0]}]" in measurement.notes  # where it ran: the operator's core
    assert f"client asked for cores [{CORES[-1]}]" in measurement.notes
    line = wait_for_log(shared, rf"POST /measure 200 model={onnx_model.sha256[:12]} \d+ ms")
    assert line.count("\n") == 0 and "median" in line

    with pytest.raises(DeviceError, match="401"):
        AgentDevice("pi", "rpi4", url=shared.url, token="wrong-wrong-wrong-wrong").measure(onnx_model, QUICK)
    wait_for_log(shared, r"POST /measure 401 model=- \d+ ms: missing or wrong token")


def test_an_upload_with_external_data_is_refused_before_the_filesystem_is_asked(shared: Agent) -> None:
    cwd = shared.log_file.parent  # the agent's working directory
    (cwd / "weights.bin").write_bytes(b"\0" * 64)
    replies = {}
    for location in ("weights.bin", "missing.bin", "/etc/hostname", "../token"):
        replies[location] = one_json_error(exchange(shared.port, post(external_data_model(location))))
    assert len(set(replies.values())) == 1, replies  # the same answer, whether the file exists or not
    status, error = replies["weights.bin"]
    assert status == 415 and "external files" in error and "initializer 'W'" in error


def test_the_readme_token_recipe_makes_a_file_both_sides_accept(tmp_path: Path) -> None:
    """README: `python -c "import secrets; print(secrets.token_urlsafe(32))" > pi4.token`."""
    from adacomp.device_farm.agent_token import read_token

    path = tmp_path / "pi4.token"
    recipe = subprocess.run(
        [sys.executable, "-c", "import secrets; print(secrets.token_urlsafe(32))"],
        capture_output=True,
        text=True,
        check=True,
    )
    path.write_text(recipe.stdout)
    path.chmod(0o600)
    assert read_token(path) == recipe.stdout.strip()
