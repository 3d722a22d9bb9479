"""The summary `pangeo-cloud up` prints once every component answers."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from pangeo_cloud.local.values import SHARED_PASSWORD

if TYPE_CHECKING:
    from pangeo_cloud.local.runtime import LocalRuntime

ADMIN_USER = "admin"  # the local admin of shared-password runs (usage page, admin panel)


def summary(rt: LocalRuntime) -> str:
    """What `up` prints once everything answers: where to go, how to log in, where data is."""
    took = time.monotonic() - rt.started_at
    lines = [
        "",
        f"pangeo-cloud is up (deployment {rt.deployment}, stage {rt.stage}) after {took:.1f} s",
        f"  Open:     {rt.url}",
    ]
    if rt.login == SHARED_PASSWORD:
        lines.append(f"  Log in:   any username, password {rt.secrets['user_password']}")
        lines.append(
            f"            as admin `{ADMIN_USER}` (usage page): password "
            f"{rt.secrets['admin_password']}"
        )
        for group in rt.groups:
            lines.append(
                f"            as a member of group {group!r} (restricted profiles): "
                f"password {rt.secrets['group_passwords'][group]}"
            )
        lines.append(f"            (passwords are kept in {rt.data_dir / 'secrets.json'})")
    else:
        lines.append("  Log in:   with GitHub (members of the allowed teams only)")
    store_note = "" if rt.store.persistent else ": kept in memory, lost at stop"
    if rt.store.kind == "minio":
        creds = "each user's credentials reach only their own prefix (MinIO STS)"
    else:
        creds = "moto does NOT enforce per-user prefixes; install MinIO for that"
    lines += [
        f"  Scratch:  {rt.scratch['url']}/<username>/ at {rt.store.endpoint}"
        f" ({rt.store.kind}{store_note}); objects expire after "
        f"{rt.scratch.get('expiryDays')} days; {creds}",
        f"  Dask:     GatewayCluster() in a notebook ({rt.url}services/dask-gateway)",
        f"  Data:     {rt.data_dir} (homes, scratch, hub database: kept between runs)",
        f"  Logs:     {rt.data_dir / 'logs'}",
    ]
    if rt.prometheus is not None:
        lines.append(
            f"  Usage:    Prometheus at {rt.prometheus_url}; "
            f"`pangeo-cloud usage {rt.deployment} {rt.stage}` reports per user; "
            f"admins see {rt.url}services/usage/"
        )
    else:
        lines.append("  Usage:    no Prometheus (not installed: make system)")
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)
