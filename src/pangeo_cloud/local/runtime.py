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
import fcntl
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pangeo_cloud.config import ConfigError, Paths, list_deployments, load_deployment
from pangeo_cloud.config import merged_values as merge
from pangeo_cloud.local import monitoring, objectstore, processes
from pangeo_cloud.local.datadir import (
    default_data_dir,
    load_secrets,
    prepare_data_dir,
)
from pangeo_cloud.local.errors import LocalRuntimeError
from pangeo_cloud.local.processes import answers, find_proxy, tail
from pangeo_cloud.local.prometheus import find_prometheus
from pangeo_cloud.local.runinfo import BrokerAccess, Passwords, RunInfo, StoreAccess
from pangeo_cloud.local.summary import ADMIN_USER, summary
from pangeo_cloud.local.values import (
    BROKER_SERVICE,
    SHARED_PASSWORD,
    GitHubLogin,
    add_health_check_service,
    aws_config_text,
    broker_config,
    local_values,
    login_mode,
    restricted_groups,
)
from pangeo_cloud.ports import free_ports

START_TIMEOUT = 180.0  # seconds for any one component to answer (2 cores, cold caches)


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
        add_health_check_service(
            self.values, self.secrets["health_check_token"], self.secrets["admin_token"]
        )
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
        github = self.github if self.login == "github" else None
        info = RunInfo(
            run_id=self.run_id,
            data_dir=self.data_dir,
            python=sys.executable,
            chp=self.chp,
            proxy_auth_token=self.secrets["proxy_auth_token"],
            ports=self.ports,
            values=self.values,
            log_level=self.log_level,
            store=StoreAccess(
                kind=self.store.kind,
                endpoint=self.store.endpoint,
                access_key=self.secrets["store_access_key"],
                secret_key=self.secrets["store_secret_key"],
            ),
            broker=BrokerAccess(
                config=str(run / "broker.json"),
                access_key=self.secrets["broker_access_key"],
                secret_key=self.secrets["broker_secret_key"],
            ),
            passwords=Passwords(
                user=self.secrets["user_password"],
                groups={g: self.secrets["group_passwords"][g] for g in self.groups},
                admin=self.secrets["admin_password"],
            ),
            github=github,
            deployment=self.deployment,
            stage=self.stage,
            prometheus=self.prometheus_url,
            admin_user=ADMIN_USER,
        )
        runtime_file = run / "runtime.json"
        info.write(runtime_file)
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
        token = self.secrets["metrics_token"]
        targets = monitoring.scrape_targets(
            self.ports, token, self.deployment, self.stage, BROKER_SERVICE
        )
        self.prometheus, note = monitoring.start_prometheus(
            self.data_dir, self.ports["prometheus"], targets, self._env()
        )
        return note

    def _wait(self, url: str, proc: Any, log: Path, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                code = proc.returncode
                raise LocalRuntimeError(
                    f"{what} exited (code {code}) while starting; see {log}:\n{tail(log)}"
                )
            if answers(url):
                return
            time.sleep(0.25)
        raise LocalRuntimeError(
            f"{what} did not answer at {url} within {START_TIMEOUT:.0f} s; see {log}:\n{tail(log)}"
        )

    # -- running -----------------------------------------------------------------

    def summary(self) -> str:
        return summary(self)

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
