"""End-to-end health check of a running hub, through JupyterHub's REST API.

This module owns ``pangeo-cloud health``. With the token of the hub's
``health-check`` service (whose role reaches only its own throw-away users:
:data:`pangeo_cloud.hub.service_users.ISSUER_SCOPES`) it

1. ``hub``: reads the hub's version and checks the token;
   ``scratch-broker``: the scratch-credentials service answers its health check
   through the hub's proxy (a broken broker is reported with its reason);
2. ``create-user``: the hub's throw-away-user endpoint
   (:mod:`pangeo_cloud.deploy.throwaway_users`) creates ``health-check-<random>``
   (or the ``--user`` name, which must not exist: an existing user is refused,
   never touched, so the check cannot delete a real user and their home) in the
   ``health-check-users`` group, and writes into its ``auth_state`` a ticket
   signed with this service's token (:mod:`pangeo_cloud.hub.service_users`): the
   user never logged in with GitHub, and without the ticket the hub's pre-spawn
   auth refresh refuses it;
3. ``start-server``: starts the user's server, then ``server-ready`` waits for it;
4. ``user-token``: a short-lived token of that user for its own server only
   (from the same endpoint: the service holds no ``tokens`` scope);
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

HTTP calls retry with exponential backoff on connection errors, 429 and 5xx, and
the kernel is driven over a websocket (both in :mod:`pangeo_cloud.deploy.hubapi`).
A failure raises :class:`HealthError` naming the step.
"""

from __future__ import annotations

import secrets
import ssl
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from pangeo_cloud.deploy.hubapi import Api, HttpError, Retry, WebSocket, execute, one_line
from pangeo_cloud.deploy.throwaway_users import create_throwaway_user, throwaway_user_token
from pangeo_cloud.errors import PangeoError

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


class HealthError(PangeoError):
    """A health-check step failed; the message is one line naming the step."""

    def __init__(self, step: str, detail: str) -> None:
        self.step = step
        super().__init__(f"health check failed at step '{step}': {detail}")


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
    return HealthCheck(opts, out).run()


class HealthCheck:
    """One run of the check: what its steps made, for the later steps and the cleanup."""

    def __init__(self, opts: HealthOptions, out: Printer = print) -> None:
        self.opts = opts
        self.out = out
        self.base = opts.hub_url.rstrip("/") + "/"
        self.context: ssl.SSLContext | None = None
        if opts.insecure:
            self.context = ssl._create_unverified_context()  # the operator's explicit choice
        self.hub = Api(self.base + "hub/api/", opts.token, opts.retry, context=self.context)
        self.name = opts.user or f"{USER_PREFIX}{secrets.token_hex(4)}"
        self.done: list[str] = []
        # Filled in by the steps, in order; the cleanup removes what was made.
        self.service: str | None = None  # the token's service name (None: not a service)
        self.user_created = False
        self.server_started = False
        self.server_url = ""
        self.user_token = ""
        self.server_api: Api | None = None
        self.kernel_id: str | None = None
        self.ws: WebSocket | None = None

    def run(self) -> list[str]:
        """Run every step; returns the ok lines, or raises HealthError naming the step."""
        opts = self.opts
        try:
            self.step("hub", self.check_hub)
            if opts.isolation:
                self.step("scratch-broker", self.check_broker)
            self.step("create-user", self.create_user)
            self.step("start-server", self.start_server)
            self.step("server-ready", self.server_ready)
            self.step("user-token", self.make_user_token)
            self.step("kernel", self.start_kernel)
            if opts.scratch:
                self.step("scratch", self.run_code(SCRATCH_CODE, "scratch"))
                if opts.isolation:
                    self.step("scratch-isolation", self.run_code(ISOLATION_CODE, "isolation"))
            if opts.dask:
                code = DASK_CODE.replace("{timeout}", str(int(opts.exec_timeout)))
                self.step("dask-gateway", self.run_code(code, "dask-gateway"))
        finally:
            problems = self.cleanup()
            if problems:
                self.out(f"FAIL cleanup       {'; '.join(problems)}")
            elif self.user_created:
                self.out(f"ok   cleanup       kernel, server and user {self.name} removed")
        if problems:
            raise HealthError("cleanup", "; ".join(problems))
        return self.done

    def step(self, label: str, fn: Callable[[], str]) -> None:
        t0 = time.monotonic()
        try:
            note = fn()
        except HealthError:
            raise
        except (HttpError, OSError, RuntimeError, TimeoutError, ValueError, KeyError) as exc:
            raise HealthError(label, one_line(str(exc) or type(exc).__name__)) from None
        line = f"ok   {label:<13} {note} ({time.monotonic() - t0:.1f}s)"
        self.done.append(line)
        self.out(line)

    def check_hub(self) -> str:
        _, info = self.hub.request("GET", "")
        try:
            _, me = self.hub.request("GET", "user")
        except HttpError as exc:
            if exc.status in (401, 403):
                raise RuntimeError("the hub rejected the token (not a valid API token)") from None
            raise
        who = me.get("name") or "?"
        self.service = who if me.get("kind") == "service" else None
        return f"JupyterHub {info.get('version')} at {self.base}, token of {me.get('kind')} {who}"

    def check_broker(self) -> str:
        url = f"{self.base}services/{BROKER_SERVICE}/api/health"
        try:
            # No token: the health check is public, and the admin token stays with the hub.
            _, model = Api(url, "", self.opts.retry, context=self.context).request("GET", "")
        except HttpError as exc:
            raise RuntimeError(
                f"the scratch-credentials service is broken (HTTP {exc.status}): {exc}; "
                "servers cannot start without it"
            ) from None
        return f"{BROKER_SERVICE} issues {model.get('scheme')} credentials"

    def create_user(self) -> str:
        # The hub's own endpoint: a new name only (an existing one is refused with 409,
        # so the check never takes over, or later deletes, a user it did not make),
        # put in the health-check group and given the service's ticket by the hub.
        lifetime = int(self.opts.start_timeout) + 1800
        created = create_throwaway_user(self.hub, self.name, lifetime)
        self.user_created = True  # created by this run: the only user cleanup deletes
        ticket = f"ticket of service {created['service']}" if created["ticket"] else "no ticket"
        return f"user {self.name} in {created['group']}, {ticket}"

    def start_server(self) -> str:
        body = {"profile": self.opts.profile} if self.opts.profile else None
        # A refusal (400: a profile not offered; 403) fails here with the hub's message.
        status, _ = self.hub.request("POST", f"users/{self.name}/server", body, ok=(201, 202))
        self.server_started = True
        return "started" if status == 201 else "spawn requested"

    def server_ready(self) -> str:
        deadline = time.monotonic() + self.opts.start_timeout
        delay = 0.5
        while True:
            _, model = self.hub.request("GET", f"users/{self.name}")
            server = (model.get("servers") or {}).get("")
            if server and server.get("ready"):
                self.server_url = urllib.parse.urljoin(self.base, server["url"].lstrip("/"))
                return f"ready at {server['url']}"
            if not server:
                raise RuntimeError("the server stopped while starting (see the hub's log)")
            if time.monotonic() > deadline:
                pending = server.get("pending")
                raise TimeoutError(
                    f"not ready within {self.opts.start_timeout:.0f} s (pending: {pending})"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 10)

    def make_user_token(self) -> str:
        self.user_token = throwaway_user_token(self.hub, self.name, 3600)
        return "token for the user's server (expires in 1 h)"

    def start_kernel(self) -> str:
        server = Api(self.server_url, self.user_token, self.opts.retry, context=self.context)
        self.server_api = server
        _, model = server.request("POST", "api/kernels", {"name": "python3"})
        self.kernel_id = model["id"]
        ws_url = self.server_url.replace("http", "ws", 1) + f"api/kernels/{model['id']}/channels"
        self.ws = WebSocket(
            ws_url, {"Authorization": f"token {self.user_token}"}, context=self.context
        )
        out_text = execute(self.ws, "import sys; print(sys.version.split()[0])", 120)
        return f"kernel {model['id'][:8]}, Python {out_text.strip()}"

    def run_code(self, code: str, what: str) -> Callable[[], str]:
        def fn() -> str:
            assert self.ws is not None  # the kernel step ran
            text = execute(self.ws, code, self.opts.exec_timeout)
            hits = [line for line in text.splitlines() if line.startswith(f"{MARKER} {what}")]
            if not hits:
                raise RuntimeError(f"no success marker in the output: {one_line(text)}")
            return hits[-1].removeprefix(f"{MARKER} {what}").strip()

        return fn

    def cleanup(self) -> list[str]:
        """Remove what the check made; returns problems (never raises)."""
        problems = []
        name, hub = self.name, self.hub
        ws, self.ws = self.ws, None
        if ws is not None:
            ws.close()
        if self.kernel_id and self.server_api:
            try:
                self.server_api.request("DELETE", f"api/kernels/{self.kernel_id}", ok=(204, 404))
            except (HttpError, OSError) as exc:
                problems.append(f"kernel: {one_line(str(exc))}")
        if self.server_started:
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
                problems.append(f"server: {one_line(str(exc))}")
        if self.user_created:
            try:
                hub.request("DELETE", f"users/{name}", ok=(204, 404))
            except (HttpError, OSError) as exc:
                problems.append(f"user {name}: {one_line(str(exc))}")
        return problems
