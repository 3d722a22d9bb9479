"""`pangeo-cloud up`: prepare the data directory, start, watch and stop everything.

Order of start (each step waits until the previous one answers):

1. the scratch store (MinIO, else moto), then the bucket and its expiry rule,
   and (MinIO) the scratch broker's own MinIO user, limited to the bucket;
2. JupyterHub with configurable-http-proxy; the hub starts its managed services:
   dask-gateway (:mod:`pangeo_cloud.local.gateway`), the idle culler and the
   scratch-credentials broker (:mod:`pangeo_cloud.broker.service`);
3. the gateway is checked through the hub's proxy, as notebooks reach it;
4. the broker's health check (it can mint credentials through MinIO's STS);
5. Prometheus scraping the hub, the gateway and the broker
   (:mod:`pangeo_cloud.local.monitoring`), if it is installed.

Servers and Dask workers get no store key: ``run/aws-config`` (their
``AWS_CONFIG_FILE``) runs the broker's client as ``credential_process``.

The data directory (``.pangeo-local/`` in the repository by default, 0700)::

    secrets.json     generated once, 0600: login passwords, store and broker keys, hub keys
    hub/             JupyterHub's database and cookie secret
    homes/<user>/    one persistent home per user
    objectstore/     the scratch bucket's objects (MinIO)
    gateway/         Dask clusters' working directories
    logs/            hub.log, gateway.log, objectstore.log
    prometheus/      Prometheus' configuration, token file, log and time series
    run/             this run's runtime.json (0600), hub config, broker.json, aws-config, lock

Everything started carries ``PANGEO_LOCAL_RUN=<run id>``; :meth:`LocalRuntime.stop`
stops the hub (which stops servers, services and proxy), then ends anything of
this run still alive, then the store.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import os
import secrets
import shlex
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pangeo_cloud.config.wiring import env_mapping
from pangeo_cloud.local import monitoring, objectstore, processes
from pangeo_cloud.local.prometheus import PrometheusError, find_prometheus
from pangeo_cloud.ports import free_ports

START_TIMEOUT = 180.0  # seconds for any one component to answer (2 cores, cold caches)
SHARED_PASSWORD = "shared-password"
BROKER_SERVICE = "scratch-credentials"
ADMIN_USER = "admin"
GITHUB = {"github", "oauthenticator.github.GitHubOAuthenticator", "GitHubOAuthenticator"}


class LocalRuntimeError(RuntimeError):
    """A problem to report as one line, naming the option or file that fixes it."""


@dataclass
class GitHubLogin:
    client_id: str
    client_secret: str
    url: str | None = None
    allowed_organizations: list[str] = field(default_factory=list)
    # org:team entries whose members become admins (custom.pangeo.auth.adminTeams).
    admin_teams: list[str] = field(default_factory=list)


def default_data_dir(repo_root: Path | None) -> Path:
    if repo_root is not None:
        return repo_root / ".pangeo-local"
    base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "pangeo-cloud"


def find_proxy() -> str:
    """configurable-http-proxy: PATH, then the tool cache of scripts/install-system.sh."""
    found = shutil.which("configurable-http-proxy")
    if found:
        return found
    cache = Path(os.environ.get("PANGEO_CACHE_DIR", Path.home() / ".cache" / "pangeo-cloud"))
    candidate = cache / "node" / "bin" / "configurable-http-proxy"
    if os.access(candidate, os.X_OK):
        return str(candidate)
    raise LocalRuntimeError(
        "configurable-http-proxy (npm) not found on PATH or in "
        f"{cache / 'node' / 'bin'}; run scripts/install-system.sh (or `make system`)"
    )


def check_port(port: int, option: str = "--port") -> None:
    with socket.socket() as sock:
        # As the proxy binds: connections closing on the port (TIME_WAIT) do
        # not block it, a listening server does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise LocalRuntimeError(
                f"port {port} on 127.0.0.1 is not available ({exc.strerror}); "
                f"choose another with {option}"
            ) from None


def prepare_data_dir(path: Path) -> Path:
    """Create the data directory (0700) and prove it is writable."""
    path = path.expanduser().absolute()
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        for sub in ("hub", "homes", "objectstore", "gateway", "logs", "run"):
            (path / sub).mkdir(exist_ok=True, mode=0o700)
        probe = path / "run" / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise LocalRuntimeError(
            f"cannot use data directory {path}: {exc.strerror or exc}; "
            "choose another with --data-dir"
        ) from None
    return path


def _token() -> str:
    return secrets.token_urlsafe(18)


def load_secrets(data_dir: Path, groups: list[str]) -> dict[str, Any]:
    """secrets.json: generated on first start (0600), completed when new keys appear."""
    file = data_dir / "secrets.json"
    data: dict[str, Any] = {}
    if file.exists():
        try:
            data = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise LocalRuntimeError(
                f"cannot read {file}: {exc}; fix or delete it (new passwords are then generated)"
            ) from None
    before = json.dumps(data, sort_keys=True)
    data.setdefault("user_password", _token())
    data.setdefault("group_passwords", {})
    for group in groups:
        data["group_passwords"].setdefault(group, _token())
    data.setdefault("store_access_key", "pangeo" + secrets.token_hex(6))
    data.setdefault("store_secret_key", secrets.token_urlsafe(30))
    # The scratch broker's own MinIO user (never the root key above).
    data.setdefault("broker_access_key", "scratch-broker-" + secrets.token_hex(4))
    data.setdefault("broker_secret_key", secrets.token_urlsafe(30))
    data.setdefault("proxy_auth_token", secrets.token_hex(32))
    data.setdefault("crypt_key", secrets.token_hex(32))
    data.setdefault("health_check_token", secrets.token_hex(32))
    data.setdefault("metrics_token", secrets.token_hex(32))
    # The `admin` user's password (JupyterHub wants 32 characters or more).
    data.setdefault("admin_password", secrets.token_urlsafe(30))
    if json.dumps(data, sort_keys=True) != before:
        write_private(file, json.dumps(data, indent=2) + "\n")
    os.chmod(file, 0o600)
    return data


def write_private(path: Path, text: str) -> None:
    """Write `text` to a file only its owner can read (created 0600, never wider)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def login_mode(values: dict[str, Any], github: GitHubLogin | None, deployment: str) -> str:
    """'github' or 'shared-password' for these values and options."""
    if github is not None:
        return "github"
    jh = values.get("jupyterhub", {})
    cls = (((jh.get("hub") or {}).get("config") or {}).get("JupyterHub") or {}).get(
        "authenticator_class"
    )
    if cls == SHARED_PASSWORD:
        return SHARED_PASSWORD
    if cls in GITHUB:
        raise LocalRuntimeError(
            f"deployment {deployment!r} logs in with GitHub: pass --github-client-id and "
            "--github-client-secret (an OAuth app whose callback URL is "
            "http://127.0.0.1:PORT/hub/oauth_callback)"
        )
    raise LocalRuntimeError(
        f"deployment {deployment!r} uses authenticator {cls!r}, which pangeo-cloud up cannot "
        "run; use --github-client-id/--github-client-secret or a shared-password deployment"
    )


def restricted_groups(values: dict[str, Any]) -> list[str]:
    """Groups named by profiles' allowed_groups (each gets a local password)."""
    profiles = ((values.get("jupyterhub") or {}).get("singleuser") or {}).get("profileList") or []
    groups: list[str] = []
    for profile in profiles:
        for group in profile.get("allowed_groups") or []:
            if group not in groups:
                groups.append(group)
    return groups


def local_values(
    values: dict[str, Any], ports: dict[str, int], endpoint: str, aws_config: Path
) -> dict[str, Any]:
    """The merged values with cluster addresses replaced by this machine's.

    - ``custom.pangeo.scratch.endpoint`` becomes the local store; a ``gs://``
      bucket is served as ``s3://`` of the same name (the store speaks S3).
    - The gateway's addresses in ``singleuser.extraEnv`` and the service URL
      become the loopback ports of this run.
    - Scratch credentials come from the scratch-credentials broker, a
      hub-managed service here (its URL and the AWS config file `aws_config`
      whose credential_process runs its client); no key reaches the users.
    """
    values = copy.deepcopy(values)
    jh = values.setdefault("jupyterhub", {})
    pangeo = jh.setdefault("custom", {}).setdefault("pangeo", {})
    scratch = pangeo.setdefault("scratch", {})
    url = scratch.get("url") or "s3://pangeo-scratch"
    parsed = urlparse(url)
    if parsed.scheme == "gs":
        url = "s3://" + url[len("gs://") :]
    scratch["url"] = url
    scratch["endpoint"] = endpoint
    scratch["region"] = scratch.get("region") or "us-east-1"
    singleuser = jh.setdefault("singleuser", {})
    env = env_mapping(singleuser.get("extraEnv"))  # either z2jh form
    env.update(
        {
            "DASK_GATEWAY__ADDRESS": f"http://127.0.0.1:{ports['public']}/services/dask-gateway",
            "DASK_GATEWAY__PROXY_ADDRESS": f"gateway://127.0.0.1:{ports['gateway']}",
            "DASK_GATEWAY__PUBLIC_ADDRESS": "/services/dask-gateway/",
            "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
        }
    )
    singleuser["extraEnv"] = env
    services = jh.setdefault("hub", {}).setdefault("services", {})
    gateway = dict(services.get("dask-gateway") or {})
    gateway["url"] = f"http://127.0.0.1:{ports['gateway']}"
    services["dask-gateway"] = gateway
    broker_url = f"http://127.0.0.1:{ports['broker']}"
    broker = dict(services.get(BROKER_SERVICE) or {})
    broker.update({"url": broker_url, "display": False})
    services[BROKER_SERVICE] = broker
    scratch["broker"] = {
        **(scratch.get("broker") or {}),
        "url": f"{broker_url}/services/{BROKER_SERVICE}/",
        "awsConfigFile": str(aws_config),
    }
    return values


def aws_config_text(python: str) -> str:
    """The AWS config of servers and workers: credentials from the broker's client.

    The client runs as a file, as in the cluster (where our package is absent).
    """
    from pangeo_cloud.broker import client

    command = " ".join(shlex.quote(part) for part in (python, client.__file__, "aws"))
    return (
        "# Written by `pangeo-cloud up`: scratch credentials for your own prefix, from the\n"
        "# scratch-credentials broker (explicit AWS_ACCESS_KEY_ID / ~/.aws/credentials win).\n"
        "[default]\n"
        f"credential_process = {command}\n"
        # Session credentials need SigV4, also in presigned URLs (boto3 may pick SigV2).
        "s3 =\n"
        "    signature_version = s3v4\n"
    )


def broker_config(values: dict[str, Any], endpoint: str) -> dict[str, Any]:
    """The broker's configuration file for this run (MinIO's STS is the store itself)."""
    scratch = values["jupyterhub"]["custom"]["pangeo"]["scratch"]
    broker = values.get("scratchBroker") or {}
    # For developers watching credentials refresh (and the refresh test): a
    # shorter lifetime than the values' (STS sessions still last >= 900 s).
    lifetime = os.environ.get("PANGEO_SCRATCH_LIFETIME") or broker.get("lifetime") or 3600
    if not str(lifetime).isdigit() or int(lifetime) < 1:
        raise LocalRuntimeError(
            f"PANGEO_SCRATCH_LIFETIME must be a number of seconds >= 1, got {lifetime!r}"
        )
    # How long the broker keeps its listing of the bucket (scratch bytes per user):
    # tests that write and then read the usage report shorten it.
    cache = os.environ.get("PANGEO_SCRATCH_USAGE_CACHE") or "300"
    if not cache.isdigit():
        raise LocalRuntimeError(f"PANGEO_SCRATCH_USAGE_CACHE must be seconds >= 0, got {cache!r}")
    return {
        "scratch": {k: v for k, v in scratch.items() if k != "broker"},
        "lifetime": int(lifetime),
        "usageCacheSeconds": int(cache),
        # MinIO ignores the role (the session inherits its caller's policy, then
        # the session policy narrows it); AWS needs a real one.
        "provider": {"roleArn": "arn:minio:iam:::role/pangeo-scratch", "stsEndpoint": endpoint},
    }


# The admin service `pangeo-cloud health` uses (as the cloud deployments define
# it in their secrets layers): it creates a test user, starts a server, takes a
# token for it, and cleans up.
HEALTH_CHECK_SCOPES = ["admin:users", "admin:servers", "tokens", "access:servers"]


def add_health_check_service(values: dict[str, Any], token: str) -> dict[str, Any]:
    """Register the `health-check` service and its role with this run's token."""
    hub = values.setdefault("jupyterhub", {}).setdefault("hub", {})
    hub.setdefault("services", {})["health-check"] = {"apiToken": token, "display": False}
    hub.setdefault("loadRoles", {})["health-check"] = {
        "services": ["health-check"],
        "scopes": HEALTH_CHECK_SCOPES,
    }
    return values


def _answers(url: str, ok: Callable[[int], bool] = lambda code: code == 200) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return ok(resp.status)
    except urllib.error.HTTPError as exc:
        return ok(exc.code)
    except OSError:
        return False


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text)


class LocalRuntime:
    """One run of the whole service on this machine (module docstring)."""

    def __init__(
        self,
        *,
        deployment: str = "local",
        stage: str = "dev",
        port: int = 8000,
        data_dir: Path | None = None,
        github: GitHubLogin | None = None,
        root: str | None = None,
        store: str = "auto",
        log_level: str = "INFO",
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.deployment = deployment
        self.stage = stage
        self.port = port
        self.github = github
        self.root = root
        self.store_choice = store
        self.log_level = log_level
        self.progress = progress or (lambda line: print(line, flush=True))
        self.data_dir_option = data_dir
        self.procs: dict[str, Any] = {}
        self.run_id = uuid.uuid4().hex
        self._lock_file: Any = None
        self.started_at = time.monotonic()
        self.prometheus: Any = None

    # -- preparation (nothing is started) --------------------------------------

    def prepare(self) -> None:
        from pangeo_cloud.config import ConfigError, Paths, list_deployments, load_deployment
        from pangeo_cloud.config import merged_values as merge

        try:
            paths = Paths.discover(self.root)
        except FileNotFoundError as exc:
            raise LocalRuntimeError(str(exc)) from None
        known = list_deployments(paths)
        if self.deployment not in known:
            raise LocalRuntimeError(
                f"unknown deployment {self.deployment!r} (known: {', '.join(known) or 'none'}); "
                "choose one with --deployment"
            )
        deployment = load_deployment(self.deployment, paths)
        if self.stage not in deployment.stages:
            raise LocalRuntimeError(
                f"deployment {self.deployment!r} has no stage {self.stage!r} "
                f"(it has: {', '.join(deployment.stages)}); choose one with --stage"
            )
        if not 1 <= self.port <= 65535:
            raise LocalRuntimeError(f"port {self.port} is not a TCP port; use --port 1-65535")
        check_port(self.port)
        try:
            self.values = merge(deployment, self.stage, paths=paths)
        except ConfigError as exc:
            raise LocalRuntimeError(f"{exc} (fix the deployment's values)") from None
        self.login = login_mode(self.values, self.github, self.deployment)
        self.chp = find_proxy()
        data = self.data_dir_option or default_data_dir(paths.root)
        self.data_dir = prepare_data_dir(Path(data))
        self._take_lock()
        self.groups = restricted_groups(self.values) if self.login == SHARED_PASSWORD else []
        self.secrets = load_secrets(self.data_dir, self.groups)
        names = (
            "hub",
            "proxy_api",
            "gateway",
            "gateway_api",
            "store",
            "broker",
            "prometheus",
            "usage",
        )
        self.ports = {"public": self.port}
        self.ports.update(zip(names, free_ports(len(names), {self.port}), strict=True))
        self.store = objectstore.store_spec(
            self.data_dir,
            self.ports["store"],
            self.secrets["store_access_key"],
            self.secrets["store_secret_key"],
            prefer=self.store_choice,
        )
        aws_config = self.data_dir / "run" / "aws-config"
        self.values = local_values(self.values, self.ports, self.store.endpoint, aws_config)
        add_health_check_service(self.values, self.secrets["health_check_token"])
        if self.github is not None and self.github.admin_teams:
            auth = self.values["jupyterhub"]["custom"]["pangeo"].setdefault("auth", {})
            auth["adminTeams"] = sorted(
                set(auth.get("adminTeams") or []) | set(self.github.admin_teams)
            )
        monitoring.add_prometheus_service(self.values, self.secrets["metrics_token"])
        monitoring.add_usage_service(self.values, self.ports["usage"])
        if find_prometheus() is not None:  # the page and the hub's idle-cluster nudges
            usage = self.values["jupyterhub"]["custom"]["pangeo"].setdefault("usage", {})
            usage["prometheusUrl"] = self.prometheus_url

    def _take_lock(self) -> None:
        lock = self.data_dir / "run" / "lock"
        f = open(lock, "a+")  # noqa: SIM115 - held for the life of the run
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            owner = f.read().strip() or "?"
            f.close()
            raise LocalRuntimeError(
                f"data directory {self.data_dir} is in use by another `pangeo-cloud up` "
                f"(pid {owner}); stop it, or choose another with --data-dir"
            ) from None
        f.truncate(0)
        f.write(str(os.getpid()))
        f.flush()
        self._lock_file = f

    # -- start -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def scratch(self) -> dict[str, Any]:
        return self.values["jupyterhub"]["custom"]["pangeo"]["scratch"]

    def _env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("JUPYTERHUB_", "DASK_GATEWAY", "PANGEO_CLOUD_HUB_CODE"))
        }
        bindir = os.path.dirname(sys.executable)
        path = [bindir, os.path.dirname(self.chp), env.get("PATH", "/usr/bin:/bin")]
        env["PATH"] = os.pathsep.join(path)
        env[processes.TAG] = self.run_id
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _step(self, number: int, total: int, what: str, run: Callable[[], str | None]) -> None:
        start = time.monotonic()
        self.progress(f"  [{number}/{total}] {what} ...")
        note = run()
        extra = f", {note}" if note else ""
        self.progress(f"        ready in {time.monotonic() - start:.1f} s{extra}")

    def start(self) -> None:
        """Start everything and wait until it answers; on failure stop what started."""
        self.started_at = time.monotonic()
        try:
            total = 5
            self._step(1, total, f"scratch store ({self.store.kind})", self._start_store)
            self._step(2, total, "JupyterHub and configurable-http-proxy", self._start_hub)
            self._step(3, total, "Dask Gateway (hub service) and idle culler", self._wait_gateway)
            self._step(4, total, "scratch-credentials broker (hub service)", self._wait_broker)
            self._step(5, total, "Prometheus (usage metrics)", self._start_prometheus)
        except BaseException:
            self.stop()
            raise

    def _start_store(self) -> str:
        env = {**self._env(), **self.store.env}
        log = self.data_dir / "logs" / "objectstore.log"
        proc = processes.start(self.store.command, env=env, log=log, cwd=self.data_dir)
        self.procs["store"] = proc
        try:
            objectstore.wait_healthy(
                self.store.health_url, lambda: proc.poll() is None, START_TIMEOUT
            )
        except objectstore.ObjectStoreError as exc:
            raise LocalRuntimeError(f"{exc}; see {log}:\n{tail(log)}") from None
        bucket = urlparse(self.scratch["url"]).netloc
        client = objectstore.s3_client(
            self.store.endpoint,
            self.secrets["store_access_key"],
            self.secrets["store_secret_key"],
            self.scratch.get("region", ""),
        )
        days = self.scratch.get("expiryDays")
        deadline = time.monotonic() + 30
        while True:  # MinIO answers health before it accepts bucket calls
            try:
                objectstore.ensure_bucket(client, bucket, days, self.scratch.get("region", ""))
                break
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise LocalRuntimeError(
                        f"the scratch store refused the bucket setup: {exc}"
                    ) from None
                time.sleep(0.5)
        if self.store.kind == "minio":
            try:
                objectstore.ensure_broker_user(
                    self.store.endpoint,
                    self.secrets["store_access_key"],
                    self.secrets["store_secret_key"],
                    bucket,
                    self.secrets["broker_access_key"],
                    self.secrets["broker_secret_key"],
                )
            except objectstore.ObjectStoreError as exc:
                raise LocalRuntimeError(f"cannot create the scratch broker's user: {exc}") from None
        return f"bucket {bucket}, objects expire after {days} days"

    def write_runtime(self) -> Path:
        run = self.data_dir / "run"
        (run / "aws-config").write_text(aws_config_text(sys.executable))
        config = broker_config(self.values, self.store.endpoint)
        (run / "broker.json").write_text(json.dumps(config, indent=1) + "\n")
        rt = {
            "run_id": self.run_id,
            "data_dir": str(self.data_dir),
            "python": sys.executable,
            "chp": self.chp,
            "proxy_auth_token": self.secrets["proxy_auth_token"],
            "ports": self.ports,
            "values": self.values,
            "log_level": self.log_level,
            "deployment": self.deployment,
            "stage": self.stage,
            "prometheus": self.prometheus_url,
            "store": {
                "kind": self.store.kind,
                "endpoint": self.store.endpoint,
                "access_key": self.secrets["store_access_key"],
                "secret_key": self.secrets["store_secret_key"],
            },
            "broker": {
                "config": str(run / "broker.json"),
                "access_key": self.secrets["broker_access_key"],
                "secret_key": self.secrets["broker_secret_key"],
            },
            "passwords": {
                "user": self.secrets["user_password"],
                "admin": self.secrets["admin_password"],
                "groups": {g: self.secrets["group_passwords"][g] for g in self.groups},
            },
            "github": None,
        }
        if self.login == "github" and self.github is not None:
            rt["github"] = {
                "client_id": self.github.client_id,
                "client_secret": self.github.client_secret,
                "url": self.github.url,
                "allowed_organizations": list(self.github.allowed_organizations)
                + list(self.github.admin_teams),
            }
        runtime_file = run / "runtime.json"
        write_private(runtime_file, json.dumps(rt, indent=1, default=str))
        config = run / "jupyterhub_config.py"
        config.write_text(
            "# Written by `pangeo-cloud up` for this run; see pangeo_cloud.local.hubconfig.\n"
            "from pangeo_cloud.local.hubconfig import configure_local_hub\n\n"
            f"configure_local_hub(c, {str(runtime_file)!r})  # noqa: F821\n"
        )
        return config

    def _start_hub(self) -> str:
        config = self.write_runtime()
        env = self._env()
        env["CONFIGPROXY_AUTH_TOKEN"] = self.secrets["proxy_auth_token"]
        env["JUPYTERHUB_CRYPT_KEY"] = self.secrets["crypt_key"]
        log = self.data_dir / "logs" / "hub.log"
        proc = processes.start(
            [sys.executable, "-m", "jupyterhub", "-f", str(config)],
            env=env,
            log=log,
            cwd=self.data_dir / "run",
        )
        self.procs["hub"] = proc
        self._wait(f"{self.url}hub/api/", proc, log, "JupyterHub")
        return None

    def _wait_gateway(self) -> str:
        hub = self.procs["hub"]
        log = self.data_dir / "logs" / "gateway.log"
        self._wait(f"{self.url}services/dask-gateway/api/health", hub, log, "Dask Gateway")
        cull = self.values["jupyterhub"].get("cull") or {}
        if cull.get("enabled"):
            timeout, every = cull.get("timeout"), cull.get("every")
            return f"culler stops servers idle {timeout} s (checks every {every} s)"
        return "idle culler disabled in the values"

    def _wait_broker(self) -> str:
        hub = self.procs["hub"]
        log = self.data_dir / "logs" / "broker.log"
        url = self.scratch["broker"]["url"] + "api/health"
        self._wait(url, hub, log, "the scratch-credentials broker")
        if self.store.kind == "minio":
            return "per-user credentials from MinIO's STS, limited to the user's prefix"
        return "moto stands in for MinIO: its credentials are NOT limited to a prefix"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['prometheus']}"

    def _start_prometheus(self) -> str:
        targets = monitoring.scrape_targets(
            self.ports, self.secrets["metrics_token"], self.deployment, self.stage, BROKER_SERVICE
        )
        server = monitoring.prometheus_for(
            self.data_dir, self.ports["prometheus"], targets, self._env()
        )
        if server is None:
            return "NOT started: prometheus is not installed (make system); no usage report"
        try:
            server.start()
        except PrometheusError as exc:
            raise LocalRuntimeError(str(exc)) from None
        self.prometheus = server
        return f"scraping hub, gateway and broker every {server.interval_s} s"

    def _wait(self, url: str, proc: Any, log: Path, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                code = proc.returncode
                raise LocalRuntimeError(
                    f"{what} exited (code {code}) while starting; see {log}:\n{tail(log)}"
                )
            if _answers(url):
                return
            time.sleep(0.25)
        raise LocalRuntimeError(
            f"{what} did not answer at {url} within {START_TIMEOUT:.0f} s; see {log}:\n{tail(log)}"
        )

    # -- running -----------------------------------------------------------------

    def summary(self) -> str:
        took = time.monotonic() - self.started_at
        lines = [
            "",
            f"pangeo-cloud is up (deployment {self.deployment}, stage {self.stage}) "
            f"after {took:.1f} s",
            f"  Open:     {self.url}",
        ]
        if self.login == SHARED_PASSWORD:
            lines.append(f"  Log in:   any username, password {self.secrets['user_password']}")
            lines.append(
                f"            as admin `{ADMIN_USER}` (usage page): password "
                f"{self.secrets['admin_password']}"
            )
            for group in self.groups:
                lines.append(
                    f"            as a member of group {group!r} (restricted profiles): "
                    f"password {self.secrets['group_passwords'][group]}"
                )
            lines.append(f"            (passwords are kept in {self.data_dir / 'secrets.json'})")
        else:
            lines.append("  Log in:   with GitHub (members of the allowed teams only)")
        store_note = "" if self.store.persistent else ": kept in memory, lost at stop"
        if self.store.kind == "minio":
            creds = "each user's credentials reach only their own prefix (MinIO STS)"
        else:
            creds = "moto does NOT enforce per-user prefixes; install MinIO for that"
        lines += [
            f"  Scratch:  {self.scratch['url']}/<username>/ at {self.store.endpoint}"
            f" ({self.store.kind}{store_note}); objects expire after "
            f"{self.scratch.get('expiryDays')} days; {creds}",
            f"  Dask:     GatewayCluster() in a notebook ({self.url}services/dask-gateway)",
            f"  Data:     {self.data_dir} (homes, scratch, hub database: kept between runs)",
            f"  Logs:     {self.data_dir / 'logs'}",
        ]
        if self.prometheus is not None:
            lines.append(
                f"  Usage:    Prometheus at {self.prometheus_url}; "
                f"`pangeo-cloud usage {self.deployment} {self.stage}` reports per user; "
                f"admins see {self.url}services/usage/"
            )
        else:
            lines.append("  Usage:    no Prometheus (not installed: make system)")
        lines.append("Press Ctrl-C to stop.")
        return "\n".join(lines)

    def failed(self) -> str | None:
        """Why the run can no longer serve (a process died), or None."""
        for name in ("hub", "store"):
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                log = "hub.log" if name == "hub" else "objectstore.log"
                path = self.data_dir / "logs" / log
                return f"{name} exited with code {proc.returncode}; see {path}:\n{tail(path)}"
        return None

    # -- stop --------------------------------------------------------------------

    def stop(self) -> None:
        """Stop everything of this run (idempotent)."""
        if self.prometheus is not None:
            self.prometheus.stop()
            self.prometheus = None
        hub = self.procs.pop("hub", None)
        if hub is not None:
            processes.stop(hub, timeout=30)
        store = self.procs.pop("store", None)
        processes.sweep(self.run_id, exclude={store.pid} if store is not None else None)
        if store is not None:
            processes.stop(store, timeout=15)
        processes.sweep(self.run_id)
        if self._lock_file is not None:
            with contextlib.suppress(OSError):
                self._lock_file.close()
            self._lock_file = None
