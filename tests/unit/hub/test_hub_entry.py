"""z2jh_entry.py as z2jh runs it: exec'd with `c` and `get_config`, code from a flat dir.

The flat directory is built from the chart's files/pangeo_cloud tree exactly as
templates/_helpers.tpl names ConfigMap keys ("/" -> "."), so this is what the
hub pod sees at $PANGEO_CLOUD_HUB_CODE. Each case runs in a fresh interpreter,
so the bundle finder cannot leak into the test process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from hub_unit_support import REPO, hub_values

CHART_FILES = REPO / "helm-chart" / "pangeo-cloud" / "files"
ENTRY = REPO / "src" / "pangeo_cloud" / "hub" / "z2jh_entry.py"

RUNNER = textwrap.dedent(
    """
    import json, sys
    from traitlets.config import Config
    values = json.load(open(sys.argv[1]))

    def get_config(key, default=None):  # z2jh's semantics; nothing of ours imported yet
        value = values
        for level in key.split("."):
            if not isinstance(value, dict) or level not in value:
                return default
            value = value[level]
        return value

    c = Config()
    namespace = {"c": c, "get_config": get_config}
    exec(compile(open(sys.argv[2]).read(), "50-pangeo-cloud.py", "exec"), namespace)
    mods = {
        name: getattr(mod, "__file__", None)
        for name, mod in sys.modules.items()
        if name.startswith("pangeo_cloud.hub") or name in ("pangeo_cloud.scratch",)
    }
    print(json.dumps({
        "modules": mods,
        "leaked": sorted(
            k for k in namespace if not k.startswith("__") and k not in ("c", "get_config")
        ),
        "hook": c.Spawner.pre_spawn_hook.__qualname__,
        "admin_groups": sorted(c.GitHubOAuthenticator.get("admin_groups", ())),
    }))
    """
)


def flat_hub_code(directory):
    """The hub-code ConfigMap's keys and contents, written as files."""
    for root, _, files in os.walk(CHART_FILES / "pangeo_cloud", followlinks=True):
        for file in files:
            if not file.endswith(".py"):
                continue
            path = os.path.join(root, file)
            key = os.path.relpath(path, CHART_FILES).replace(os.sep, ".").replace(".py.py", ".py")
            with open(path) as f:
                (directory / key).write_text(f.read())
    return directory


def run_entry(tmp_path, values, code_dir=None):
    (tmp_path / "values.json").write_text(json.dumps(values))
    (tmp_path / "runner.py").write_text(RUNNER)
    env = dict(os.environ)
    env.pop("PANGEO_CLOUD_HUB_CODE", None)
    if code_dir is not None:
        env["PANGEO_CLOUD_HUB_CODE"] = str(code_dir)
    return subprocess.run(
        [sys.executable, str(tmp_path / "runner.py"), str(tmp_path / "values.json"), str(ENTRY)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_entry_loads_our_code_from_the_configmap_directory(tmp_path):
    code = tmp_path / "pangeo"
    code.mkdir()
    keys = {p.name for p in flat_hub_code(code).iterdir()}
    assert {
        "pangeo_cloud.bundle.py",
        "pangeo_cloud.hub.config.py",
        "pangeo_cloud.scratch.py",
    } <= keys
    values = hub_values(custom={"pangeo": {"auth": {"adminTeams": ["o:admins"]}}})
    result = run_entry(tmp_path, values, code)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.splitlines()[-1])
    assert out["modules"], out
    for name, file in out["modules"].items():
        assert file.startswith("<pangeo-cloud-bundle>/"), (name, file)
    assert out["leaked"] == []  # nothing left in z2jh's namespace for hub.extraConfig
    assert out["hook"].endswith("pangeo_pre_spawn_hook")
    assert out["admin_groups"] == ["o:admins"]


def test_entry_imports_installed_package_without_code_dir(tmp_path):
    result = run_entry(tmp_path, hub_values())
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.splitlines()[-1])
    assert out["modules"]["pangeo_cloud.hub.config"].endswith("config.py")
    assert not out["modules"]["pangeo_cloud.hub.config"].startswith("<pangeo-cloud-bundle>")


@pytest.mark.parametrize(
    ("scratch", "expected"),
    [
        ({"url": ""}, "no scratch bucket configured: set jupyterhub.custom.pangeo.scratch.url"),
        ({"url": "ftp://x"}, "jupyterhub.custom.pangeo.scratch.url must be gs://BUCKET"),
    ],
)
def test_entry_refuses_bad_scratch_with_one_line(tmp_path, scratch, expected):
    values = hub_values()
    values["custom"]["pangeo"]["scratch"] = scratch
    result = run_entry(tmp_path, values)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("FATAL: pangeo-cloud hub configuration: ")
    assert expected in lines[0]
