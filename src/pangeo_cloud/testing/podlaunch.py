"""Start one container process inside a private mount namespace, with its volumes in place.

This file owns the last step of the kubelet stand-in (:mod:`pangeo_cloud.testing.kubelet`):
it is run as a script (never imported by the pod's program) under
``unshare --mount --propagation private``, so every mount it makes is seen by
the container's process only and vanishes with it. It reads one JSON spec:

``mounts``
    ``[source, target, read_only]``: bind mounts, in order, exactly where the
    pod spec's ``volumeMounts`` put them (a ``subPath`` mount binds one file).
``hosts``
    the text of ``/etc/hosts`` (Service names of the namespace, as cluster DNS
    would answer them).
``uid``, ``gid``, ``groups``
    the container's ``securityContext`` user, group and supplementary groups
    (fsGroup); privileges are dropped after mounting.
``reachable``
    paths the container's user must be able to reach (the image's programs,
    where they are installed on this machine); an ancestor directory closed to
    other users gets the overlay described below, with mode 0755.
``cwd``, ``env``, ``argv``
    working directory, the complete environment, the command line.

A target whose directory does not exist on this machine (``/usr/local/etc/jupyterhub``,
``/srv/jupyterhub``...) is created on a tmpfs laid over its nearest existing
ancestor; the ancestor's own entries are bound back into that tmpfs first, so
nothing else of the machine's filesystem changes, inside or outside.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

_OVERLAID: set[str] = set()


def _mount(*args: str) -> None:
    proc = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"podlaunch: mount {' '.join(args)}: {proc.stderr.strip()}")


def _overlay(directory: str) -> None:
    """Lay a tmpfs over ``directory`` that still shows its current entries."""
    if directory in _OVERLAID:
        return
    staging = tempfile.mkdtemp(prefix="podlaunch-")
    _mount("-t", "tmpfs", "-o", "mode=755", "tmpfs", staging)
    for name in os.listdir(directory):
        source, copy = os.path.join(directory, name), os.path.join(staging, name)
        if os.path.islink(source):
            os.symlink(os.readlink(source), copy)
            continue
        if os.path.isdir(source):
            os.mkdir(copy)
        else:
            open(copy, "w").close()
        _mount("--rbind", source, copy)
    _mount("--move", staging, directory)
    os.rmdir(staging)
    _OVERLAID.add(directory)


def _ensure_dir(path: str) -> None:
    """Create ``path`` without writing to the machine's filesystem (see module doc)."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    _ensure_dir(parent)
    if parent not in _OVERLAID:
        _overlay(parent)
    os.mkdir(path)
    _OVERLAID.add(path)  # lives on our tmpfs: children need no overlay


def _make_reachable(path: str) -> None:
    """Let any user traverse to ``path``: an ancestor closed to others gets a 0755 tmpfs
    showing the same entries (their own permissions unchanged)."""
    parts = os.path.normpath(path).split(os.sep)
    for n in range(2, len(parts)):
        ancestor = os.sep.join(parts[:n])
        if os.path.isdir(ancestor) and not os.stat(ancestor).st_mode & 0o001:
            _overlay(ancestor)


def _bind(source: str, target: str, read_only: bool) -> None:
    if os.path.isdir(source):
        _ensure_dir(target)
    else:
        _ensure_dir(os.path.dirname(target))
        if not os.path.exists(target):
            parent = os.path.dirname(target)
            if parent not in _OVERLAID:
                _overlay(parent)
            open(target, "w").close()
    _mount("--bind", source, target)
    if read_only:
        _mount("-o", "remount,bind,ro", target)


def main(spec_path: str) -> None:
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    # Mounts made here must not propagate back to the machine.
    _mount("--make-rprivate", "/")
    for path in spec.get("reachable") or []:
        _make_reachable(path)
    for source, target, read_only in spec["mounts"]:
        _bind(source, os.path.normpath(target), read_only)
    hosts = os.path.join(os.path.dirname(spec_path), "hosts")
    with open(hosts, "w", encoding="utf-8") as f:
        f.write(spec["hosts"])
    os.chmod(hosts, 0o644)
    _mount("--bind", hosts, "/etc/hosts")
    _ensure_dir(spec["cwd"])
    os.chdir(spec["cwd"])
    if spec.get("uid") is not None:
        gid = spec.get("gid")
        gid = spec["uid"] if gid is None else gid
        os.setgroups([int(g) for g in spec.get("groups") or []])
        os.setgid(int(gid))
        os.setuid(int(spec["uid"]))
    argv = spec["argv"]
    env = spec["env"]
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        raise SystemExit(f"podlaunch: cannot execute {argv[0]!r}: {exc}") from None


if __name__ == "__main__":
    main(sys.argv[1])
