"""End-to-end health check of a running hub, through JupyterHub's REST API.

This module owns ``pangeo-cloud health``. With an admin service token (the
``health-check`` service of the stage's secrets file, scopes ``admin:users``,
``admin:servers``, ``tokens``, ``access:servers``) it

1. ``hub``: reads the hub's version and checks the token;
   ``scratch-broker``: the scratch-credentials service answers its health check
   through the hub's proxy (a broken broker is reported with its reason);
2. ``create-user``: creates a throw-away user ``health-check-<random>`` (or the
   ``--user`` name, which must not exist: an existing user is refused, never
   touched, so the check cannot delete a real user and their home) and writes
   into its ``auth_state`` a ticket signed with this service's token
   (:mod:`pangeo_cloud.hub.service_users`): the user never logged in with GitHub,
   and without the ticket the hub's pre-spawn auth refresh refuses it;
3. ``start-server``: starts the user's server, then ``server-ready`` waits for it;
4. ``user-token``: makes a short-lived token of that user for its server;
5. ``kernel``: starts a Python kernel over the server's Jupyter REST API and
   runs code over the kernel websocket:
6. ``scratch``: ``$PANGEO_SCRATCH`` is set and writable (write, read, delete);
   ``scratch-isolation``: from the same server, listing the bucket root and
   writing into another prefix are both refused (the credentials from the
   scratch-credentials broker reach the user's own prefix only);
7. ``dask-gateway``: ``dask_gateway.Gateway()`` (no arguments, as users do)
   starts a cluster, scales to one worker, computes, sees ``PANGEO_SCRATCH`` on
   the worker, shuts down;
8. ``cleanup``: always: kernel, server and user are removed, and only what this
   run created (the hub answered 201 to its POST; a name that existed is left alone).

HTTP calls retry with exponential backoff on connection errors, 429 and 5xx.
A failure raises :class:`HealthError` naming the step. The websocket client
is a small RFC 6455 implementation on the standard library, so the check
needs no packages beyond the CLI's.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import socket
import ssl
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pangeo_cloud.deploy.tools import ToolError
from pangeo_cloud.hub.service_users import make_ticket

RETRY_STATUSES = {429, 500, 502, 503, 504}
# The steps of a full check, in order (module docstring); tests compare with it.
STEPS = (
    "hub",
    "scratch-broker",
    "create-user",
    "start-server",
    "server-ready",
    "user-token",
    "kernel",
    "scratch",
    "scratch-isolation",
    "dask-gateway",
)
USER_PREFIX = "health-check-"
BROKER_SERVICE = "scratch-credentials"
MARKER = "PANGEO_HEALTH_OK"

SCRATCH_CODE = f"""
import os, uuid
import fsspec
url = os.environ.get("PANGEO_SCRATCH")
assert url, "PANGEO_SCRATCH is not set in the server's environment"
target = url.rstrip("/") + "/pangeo-cloud-health-" + uuid.uuid4().hex + ".txt"
fs, path = fsspec.core.url_to_fs(target)
try:
    fs.makedirs(fs._parent(path), exist_ok=True)
except Exception:
    pass
fs.pipe_file(path, b"pangeo-cloud health")
assert fs.cat_file(path) == b"pangeo-cloud health", "read back a different content"
fs.rm_file(path)
print("{MARKER} scratch", url)
"""

# Someone else's prefix: a sibling of the user's, for a name no real user has.
ISOLATION_CODE = f"""
import os, uuid
import fsspec
url = os.environ["PANGEO_SCRATCH"].rstrip("/")
base, own = url.rsplit("/", 1)
other = base + "/health-2dcheck-2dother-" + uuid.uuid4().hex + "/probe.txt"

def refused(call):
    try:
        call()
    except PermissionError:
        return True
    except OSError as exc:  # gcsfs reports 403 as an OSError / HttpError
        text = str(exc)
        return "403" in text or "Forbidden" in text or "AccessDenied" in text
    return False

fs, other_path = fsspec.core.url_to_fs(other)
bucket = other_path.split("/", 1)[0]
if not refused(lambda: fs.pipe_file(other_path, b"x")):
    fs.rm_file(other_path)
    raise AssertionError("wrote into another user's prefix " + other)
if not refused(lambda: fs.ls(bucket, refresh=True)):
    raise AssertionError("listed the bucket root " + bucket + " (every user's prefix)")
print("{MARKER} isolation", "refused outside " + url + "/ (bucket root, other prefix)")
"""

DASK_CODE = f"""
import os
from dask_gateway import Gateway
gateway = Gateway()
cluster = gateway.new_cluster()
try:
    cluster.scale(1)
    client = cluster.get_client()
    client.wait_for_workers(1, timeout={{timeout}})
    assert client.submit(lambda x: x + 1, 41).result(timeout=120) == 42, "wrong result"
    worker_scratch = client.submit(lambda: os.environ.get("PANGEO_SCRATCH")).result(timeout=120)
    assert worker_scratch, "PANGEO_SCRATCH is not set on the Dask worker"
    client.close()
finally:
    cluster.shutdown()
print("{MARKER} dask-gateway", cluster.name, "worker PANGEO_SCRATCH=" + worker_scratch)
"""


class HealthError(ToolError):
    """A health-check step failed; the message is one line naming the step."""

    def __init__(self, step: str, detail: str) -> None:
        self.step = step
        super().__init__(f"health check failed at step '{step}': {detail}")


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"HTTP {status}: {message}")


@dataclass
class Retry:
    attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 15.0

    def delays(self):
        for n in range(self.attempts - 1):
            yield min(self.max_delay, self.base_delay * 2**n)


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects on the same host only: urllib would resend the token elsewhere."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        old, new = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
        if (new.scheme, new.netloc) != (old.scheme, old.netloc):
            raise urllib.error.HTTPError(
                req.full_url,
                code,
                f"refusing to follow a redirect to {new.scheme}://{new.netloc} with the token",
                headers,
                fp,
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


@dataclass
class Api:
    """JSON over HTTP with a token, retrying transient failures with backoff."""

    base: str  # ends with "/"
    token: str
    retry: Retry = field(default_factory=Retry)
    timeout: float = 60
    context: ssl.SSLContext | None = None

    def request(
        self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201, 202, 204)
    ) -> tuple[int, Any]:
        url = urllib.parse.urljoin(self.base, path.lstrip("/"))
        data = None if body is None else json.dumps(body).encode()
        delays = self.retry.delays()
        while True:
            req = urllib.request.Request(
                url,
                data=data,
                method=method,
                headers={
                    "Authorization": f"token {self.token}",
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                },
            )
            opener = urllib.request.build_opener(
                urllib.request.HTTPSHandler(context=self.context), _SameHostRedirects()
            )
            try:
                with opener.open(req, timeout=self.timeout) as resp:
                    status, text = resp.status, resp.read().decode()
            except urllib.error.HTTPError as exc:
                if 300 <= exc.code < 400:  # a redirect _SameHostRedirects refused
                    raise HttpError(exc.code, f"{method} {url}: {exc.msg}") from None
                status, text = exc.code, exc.read().decode(errors="replace")
            except (urllib.error.URLError, OSError) as exc:
                delay = next(delays, None)
                if delay is None:
                    reason = getattr(exc, "reason", exc)
                    raise HttpError(0, f"{method} {url}: {reason}") from None
                time.sleep(delay)
                continue
            if status in ok:
                try:
                    return status, json.loads(text) if text.strip() else None
                except ValueError:
                    return status, text
            if status in RETRY_STATUSES:
                delay = next(delays, None)
                if delay is not None:
                    time.sleep(delay)
                    continue
            try:
                message = json.loads(text).get("message") or text
            except (ValueError, AttributeError):
                message = text
            raise HttpError(status, f"{method} {url}: {_one_line(message)}")


# --- a minimal websocket client (RFC 6455), enough for the kernel protocol -------


class WebSocket:
    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        timeout: float = 30,
        context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        secure = parts.scheme in ("wss", "https")
        host = parts.hostname or "localhost"
        port = parts.port or (443 if secure else 80)
        sock = socket.create_connection((host, port), timeout=timeout)
        if secure:
            sock = (context or ssl.create_default_context()).wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self.buffer = b""
        key = base64.b64encode(os.urandom(16)).decode()
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {parts.netloc}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("connection closed during the websocket handshake")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0].decode(errors="replace")
        if " 101 " not in f"{status} ":
            raise ConnectionError(f"websocket handshake refused: {status}")
        accept = base64.b64encode(hashlib.sha1((key + self.GUID).encode()).digest()).decode()
        if accept.encode() not in head:
            raise ConnectionError("websocket handshake: bad Sec-WebSocket-Accept")

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("websocket closed by the server")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _send(self, opcode: int, payload: bytes) -> None:
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 2**16:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send(self, text: str) -> None:
        self._send(0x1, text.encode())

    def recv(self, timeout: float) -> str | None:
        """The next text message; None when the server closed the connection."""
        self.sock.settimeout(timeout)
        message = b""
        while True:
            b1, b2 = self._read(2)
            opcode, length = b1 & 0x0F, b2 & 0x7F
            if length == 126:
                length = struct.unpack("!H", self._read(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", self._read(8))[0]
            mask = self._read(4) if b2 & 0x80 else None
            payload = self._read(length)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x8:
                return None
            if opcode == 0x9:
                self._send(0xA, payload)
                continue
            if opcode in (0x1, 0x2, 0x0):
                message += payload
                if b1 & 0x80:
                    if opcode == 0x2:
                        message = b""  # binary kernel messages: not used here
                        continue
                    return message.decode(errors="replace")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send(0x8, b"")
        self.sock.close()


def execute(ws: WebSocket, code: str, timeout: float) -> str:
    """Run `code` in the kernel; its stdout, or RuntimeError with the Python error."""
    msg_id = uuid.uuid4().hex
    ws.send(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "username": "pangeo-cloud-health",
                    "session": msg_id,
                    "msg_type": "execute_request",
                    "version": "5.3",
                    "date": datetime.now(UTC).isoformat(),
                },
                "parent_header": {},
                "metadata": {},
                "channel": "shell",
                "buffers": [],
                "content": {
                    "code": code,
                    "silent": False,
                    "store_history": False,
                    "user_expressions": {},
                    "allow_stdin": False,
                    "stop_on_error": True,
                },
            }
        )
    )
    deadline = time.monotonic() + timeout
    output: list[str] = []
    error: str | None = None
    idle = replied = False
    while not (idle and replied):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(
                f"no result within {timeout:.0f} s; output so far: "
                f"{_one_line(''.join(output)) or '(none)'}"
            )
        try:
            text = ws.recv(timeout=left)
        except TimeoutError:
            continue
        if text is None:
            raise ConnectionError("the kernel websocket was closed")
        msg = json.loads(text)
        if (msg.get("parent_header") or {}).get("msg_id") != msg_id:
            continue
        kind, content = msg.get("msg_type") or msg["header"]["msg_type"], msg.get("content", {})
        if kind == "stream":
            output.append(content.get("text", ""))
        elif kind == "error":
            error = _kernel_error(content)
        elif kind == "status" and content.get("execution_state") == "idle":
            idle = True
        elif kind == "execute_reply":
            replied = True
            if content.get("status") != "ok" and error is None:
                error = _kernel_error(content)
    if error:
        raise RuntimeError(error)
    return "".join(output)


def _kernel_error(content: dict[str, Any]) -> str:
    """``Name: message``; an exception without a message names where it came from."""
    name, value = content.get("ename"), content.get("evalue")
    if value:
        return f"{name}: {value}"
    frames = [line for line in content.get("traceback") or [] if "File " in line]
    where = re.sub(r"\x1b\[[0-9;]*m", "", frames[-1]).strip() if frames else ""
    return f"{name} with no message" + (f" (raised at {_one_line(where, 160)})" if where else "")


# --- the check ----------------------------------------------------------------------


@dataclass
class HealthOptions:
    hub_url: str
    token: str
    user: str | None = None
    profile: str | None = None
    start_timeout: float = 600
    exec_timeout: float = 600
    dask: bool = True
    scratch: bool = True
    isolation: bool = True  # the broker's health and the prefix boundary
    retry: Retry = field(default_factory=Retry)
    insecure: bool = False


Printer = Callable[[str], None]


def run_health(opts: HealthOptions, out: Printer = print) -> list[str]:
    """Run every step; returns the ok lines, or raises HealthError naming the step."""
    base = opts.hub_url.rstrip("/") + "/"
    context = None
    if opts.insecure:
        context = ssl._create_unverified_context()  # noqa: S323 - explicit operator choice
    hub = Api(base + "hub/api/", opts.token, opts.retry, context=context)
    name = opts.user or f"{USER_PREFIX}{secrets.token_hex(4)}"
    done: list[str] = []
    state: dict[str, Any] = {}

    def step(label: str, fn: Callable[[], str]) -> None:
        t0 = time.monotonic()
        try:
            note = fn()
        except HealthError:
            raise
        except (HttpError, OSError, RuntimeError, TimeoutError, ValueError, KeyError) as exc:
            raise HealthError(label, _one_line(str(exc) or type(exc).__name__)) from None
        line = f"ok   {label:<13} {note} ({time.monotonic() - t0:.1f}s)"
        done.append(line)
        out(line)

    def check_hub() -> str:
        _, info = hub.request("GET", "")
        try:
            _, me = hub.request("GET", "user")
        except HttpError as exc:
            if exc.status in (401, 403):
                raise RuntimeError("the hub rejected the token (not a valid API token)") from None
            raise
        who = me.get("name") or "?"
        state["service"] = who if me.get("kind") == "service" else None
        return f"JupyterHub {info.get('version')} at {base}, token of {me.get('kind')} {who}"

    def check_broker() -> str:
        url = f"{base}services/{BROKER_SERVICE}/api/health"
        try:
            # No token: the health check is public, and the admin token stays with the hub.
            _, model = Api(url, "", opts.retry, context=context).request("GET", "")
        except HttpError as exc:
            raise RuntimeError(
                f"the scratch-credentials service is broken (HTTP {exc.status}): {exc}; "
                "servers cannot start without it"
            ) from None
        return f"{BROKER_SERVICE} issues {model.get('scheme')} credentials"

    def create_user() -> str:
        status, _ = hub.request("POST", f"users/{name}", ok=(201, 409))
        if status == 409:
            raise HealthError(
                "create-user",
                f"user {name!r} already exists on the hub; the check creates and deletes only "
                "its own throw-away users: omit --user or name one that does not exist",
            )
        state["user"] = name  # created by this run: the only user cleanup deletes
        note = f"user {name}"
        if not state.get("service"):
            return note + ", no ticket (the token is not a service's)"
        ticket = make_ticket(opts.token, state["service"], name, int(opts.start_timeout) + 1800)
        # A hub without auth_state encryption (no GitHub login) answers 500 and
        # needs no ticket: its spawns do not refresh a GitHub login.
        status, _ = hub.request("PATCH", f"users/{name}", {"auth_state": ticket}, ok=(200, 500))
        if status == 500:
            return note + ", no ticket (the hub keeps no auth_state)"
        return note + f", ticket of service {state['service']}"

    def start_server() -> str:
        body = {"profile": opts.profile} if opts.profile else None
        # A refusal (400: a profile not offered; 403) fails here with the hub's message.
        status, _ = hub.request("POST", f"users/{name}/server", body, ok=(201, 202))
        state["server"] = True
        return "started" if status == 201 else "spawn requested"

    def server_ready() -> str:
        deadline = time.monotonic() + opts.start_timeout
        delay = 0.5
        while True:
            _, model = hub.request("GET", f"users/{name}")
            server = (model.get("servers") or {}).get("")
            if server and server.get("ready"):
                state["server_url"] = urllib.parse.urljoin(base, server["url"].lstrip("/"))
                return f"ready at {server['url']}"
            if not server:
                raise RuntimeError("the server stopped while starting (see the hub's log)")
            if time.monotonic() > deadline:
                pending = server.get("pending")
                raise TimeoutError(
                    f"not ready within {opts.start_timeout:.0f} s (pending: {pending})"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 10)

    def user_token() -> str:
        _, reply = hub.request(
            "POST", f"users/{name}/tokens", {"note": "pangeo-cloud health", "expires_in": 3600}
        )
        state["user_token"] = reply["token"]
        return "token for the user's server (expires in 1 h)"

    def kernel() -> str:
        server = Api(state["server_url"], state["user_token"], opts.retry, context=context)
        state["server_api"] = server
        _, model = server.request("POST", "api/kernels", {"name": "python3"})
        state["kernel"] = model["id"]
        ws_url = (
            state["server_url"].replace("http", "ws", 1) + f"api/kernels/{model['id']}/channels"
        )
        state["ws"] = WebSocket(
            ws_url, {"Authorization": f"token {state['user_token']}"}, context=context
        )
        out_text = execute(state["ws"], "import sys; print(sys.version.split()[0])", 120)
        return f"kernel {model['id'][:8]}, Python {out_text.strip()}"

    def run_code(code: str, what: str) -> Callable[[], str]:
        def fn() -> str:
            text = execute(state["ws"], code, opts.exec_timeout)
            hits = [line for line in text.splitlines() if line.startswith(f"{MARKER} {what}")]
            if not hits:
                raise RuntimeError(f"no success marker in the output: {_one_line(text)}")
            return hits[-1].removeprefix(f"{MARKER} {what}").strip()

        return fn

    try:
        step("hub", check_hub)
        if opts.isolation:
            step("scratch-broker", check_broker)
        step("create-user", create_user)
        step("start-server", start_server)
        step("server-ready", server_ready)
        step("user-token", user_token)
        step("kernel", kernel)
        if opts.scratch:
            step("scratch", run_code(SCRATCH_CODE, "scratch"))
            if opts.isolation:
                step("scratch-isolation", run_code(ISOLATION_CODE, "isolation"))
        if opts.dask:
            code = DASK_CODE.replace("{timeout}", str(int(opts.exec_timeout)))
            step("dask-gateway", run_code(code, "dask-gateway"))
    finally:
        problems = cleanup(hub, name, state)
        if problems:
            out(f"FAIL cleanup       {'; '.join(problems)}")
        elif state.get("user"):
            out(f"ok   cleanup       kernel, server and user {name} removed")
    if problems:
        raise HealthError("cleanup", "; ".join(problems))
    return done


def cleanup(hub: Api, name: str, state: dict[str, Any]) -> list[str]:
    """Remove what the check made; returns problems (never raises)."""
    problems = []
    ws = state.pop("ws", None)
    if ws is not None:
        ws.close()
    if state.get("kernel") and state.get("server_api"):
        try:
            state["server_api"].request("DELETE", f"api/kernels/{state['kernel']}", ok=(204, 404))
        except (HttpError, OSError) as exc:
            problems.append(f"kernel: {_one_line(str(exc))}")
    if state.get("server"):
        try:
            hub.request("DELETE", f"users/{name}/server", ok=(202, 204, 400, 404))
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                _, model = hub.request("GET", f"users/{name}", ok=(200, 404))
                if not model or not (model.get("servers") or {}):
                    break
                time.sleep(1)
            else:
                problems.append(f"server of {name} did not stop within 300 s")
        except (HttpError, OSError) as exc:
            problems.append(f"server: {_one_line(str(exc))}")
    if state.get("user"):
        try:
            hub.request("DELETE", f"users/{name}", ok=(204, 404))
        except (HttpError, OSError) as exc:
            problems.append(f"user {name}: {_one_line(str(exc))}")
    return problems
