"""A client for JupyterHub's and Jupyter servers' REST APIs and the kernel protocol.

:class:`Api` sends JSON with a token and retries connection errors, 429 and 5xx
with exponential backoff (:class:`Retry`); :class:`WebSocket` is a small RFC 6455
client on the standard library, enough for :func:`execute` to run code in a
kernel over its channels websocket. Used by ``pangeo-cloud health`` and
``pangeo-cloud clusters``; needs no packages beyond the CLI's.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import socket
import ssl
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

RETRY_STATUSES = {429, 500, 502, 503, 504}


class HttpError(Exception):
    """A request failed for good (status 0: the hub could not be reached)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"HTTP {status}: {message}")


@dataclass
class Retry:
    """How often and how patiently a request is retried (exponential backoff)."""

    attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 15.0

    def delays(self):
        for n in range(self.attempts - 1):
            yield min(self.max_delay, self.base_delay * 2**n)


def one_line(text: str, limit: int = 300) -> str:
    """`text` on one line, shortened to `limit` characters for a message."""
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
            raise HttpError(status, f"{method} {url}: {one_line(message)}")


# --- a minimal websocket client (RFC 6455), enough for the kernel protocol -------


class WebSocket:
    """One client websocket connection (text messages; pings answered)."""

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
                f"{one_line(''.join(output)) or '(none)'}"
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
            error = kernel_error(content)
        elif kind == "status" and content.get("execution_state") == "idle":
            idle = True
        elif kind == "execute_reply":
            replied = True
            if content.get("status") != "ok" and error is None:
                error = kernel_error(content)
    if error:
        raise RuntimeError(error)
    return "".join(output)


def kernel_error(content: dict[str, Any]) -> str:
    """``Name: message``; an exception without a message names where it came from."""
    name, value = content.get("ename"), content.get("evalue")
    if value:
        return f"{name}: {value}"
    frames = [line for line in content.get("traceback") or [] if "File " in line]
    where = re.sub(r"\x1b\[[0-9;]*m", "", frames[-1]).strip() if frames else ""
    return f"{name} with no message" + (f" (raised at {one_line(where, 160)})" if where else "")
