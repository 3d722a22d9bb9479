"""A real Prometheus on loopback: its configuration, start, readiness and queries.

`pangeo-cloud up` and the tests use the same server the clusters run (the
Debian package ``prometheus``, installed by ``scripts/install-system.sh``), so
the usage report, the dashboards' queries and the scrape configuration are
exercised against the real query engine, not a stand-in.

Scrape targets are described by :class:`ScrapeTarget`; a bearer token (the
hub's ``/hub/metrics`` needs one with the ``read:metrics`` scope) is written to
a private file next to the configuration, never into it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pangeo_cloud.hub.promql import PrometheusError, query
from pangeo_cloud.local import processes

__all__ = ["PrometheusError", "PrometheusServer", "ScrapeTarget", "find_prometheus", "query"]

#: How often the local Prometheus scrapes (the clusters' default is 1 min; a
#: short interval keeps the usage report of a short `up` session meaningful).
DEFAULT_SCRAPE_INTERVAL_S = 5
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ScrapeTarget:
    """One metrics endpoint: ``url`` is the full address of its metrics path."""

    job: str
    url: str
    bearer_token: str | None = None
    labels: dict[str, str] = field(default_factory=dict)


def find_prometheus() -> str | None:
    """The Prometheus server binary: $PANGEO_PROMETHEUS, PATH, then Debian's path."""
    explicit = os.environ.get("PANGEO_PROMETHEUS")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    found = shutil.which("prometheus")
    if found:
        return found
    return "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None


def scrape_config(
    targets: list[ScrapeTarget], token_dir: Path, interval_s: int = DEFAULT_SCRAPE_INTERVAL_S
) -> dict[str, Any]:
    """Prometheus configuration scraping `targets`; tokens go to files in `token_dir`."""
    jobs = []
    for target in targets:
        parts = urllib.parse.urlsplit(target.url)
        job: dict[str, Any] = {
            "job_name": target.job,
            "scheme": parts.scheme,
            "metrics_path": parts.path or "/metrics",
            "static_configs": [{"targets": [parts.netloc], "labels": dict(target.labels)}],
        }
        if target.bearer_token:
            token_file = token_dir / f"{target.job}.token"
            token_file.write_text(target.bearer_token)
            os.chmod(token_file, 0o600)
            job["authorization"] = {"type": "Bearer", "credentials_file": str(token_file)}
        jobs.append(job)
    interval = f"{interval_s}s"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": jobs,
    }


class PrometheusServer:
    """One Prometheus process with its data under ``data_dir``."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        targets: list[ScrapeTarget],
        *,
        interval_s: int = DEFAULT_SCRAPE_INTERVAL_S,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.targets = targets
        self.interval_s = interval_s
        self.env = env if env is not None else dict(os.environ)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.data_dir / "prometheus.log"

    def write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = scrape_config(self.targets, self.data_dir, self.interval_s)
        path = self.data_dir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def start(self) -> None:
        binary = find_prometheus()
        if binary is None:
            raise PrometheusError(
                "prometheus not found: install Debian's package `prometheus` "
                "(make system does) or set PANGEO_PROMETHEUS"
            )
        config = self.write_config()
        command = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.data_dir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",  # lets `up` reload the scrape targets
        ]
        self.proc = processes.start(command, env=self.env, log=self.log, cwd=self.data_dir)
        self.wait_ready()

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise PrometheusError(
                    f"prometheus exited (code {self.proc.returncode}) while starting; "
                    f"see {self.log}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise PrometheusError(f"prometheus did not become ready within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is not None:
            processes.stop(self.proc)
            self.proc = None

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector (raises on a query Prometheus refuses)."""
        return query(self.url, promql)
