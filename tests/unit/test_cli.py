"""The CLI turns every failure into one line on stderr and a non-zero exit."""

from __future__ import annotations

import pytest

from pangeo_cloud import cli
from pangeo_cloud.commands import render
from pangeo_cloud.config import ConfigError
from pangeo_cloud.deploy.health import HealthError
from pangeo_cloud.deploy.promotion import PromotionError
from pangeo_cloud.deploy.release import DeployError
from pangeo_cloud.deploy.tools import ToolError
from pangeo_cloud.local.errors import LocalRuntimeError


def _fail_with(exc: BaseException):
    def run(args):
        raise exc

    return run


@pytest.mark.parametrize(
    ("exc", "code", "needle"),
    [
        (RuntimeError("boom"), 2, "internal error: RuntimeError: boom"),
        (FileNotFoundError("no such file: x.yaml"), 1, "error: no such file: x.yaml"),
        # Every PangeoError is the operator's to fix: one line, exit 1.
        (ConfigError("bad key", key_path="a.b"), 1, "error: a.b: bad key"),
        (ToolError("`helm` not found"), 1, "error: `helm` not found"),
        (LocalRuntimeError("port 8000 is taken"), 1, "error: port 8000 is taken"),
        (HealthError("hub", "no answer"), 1, "error: health check failed at step 'hub'"),
        (PromotionError("has not passed"), 1, "error: has not passed"),
        (DeployError("local/dev", "tools", "no helm"), 1, "failed at step 'tools': no helm"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
)
def test_failures_are_one_line(monkeypatch, capsys, exc, code, needle):
    monkeypatch.setattr(render, "run", _fail_with(exc))
    monkeypatch.delenv("PANGEO_CLOUD_DEBUG", raising=False)
    assert cli.main(["render", "local", "dev"]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and err[0].startswith("pangeo-cloud render:")


def test_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setattr(render, "run", _fail_with(RuntimeError("boom")))
    monkeypatch.setenv("PANGEO_CLOUD_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        cli.main(["render", "local", "dev"])


def test_every_operator_command_is_registered():
    parser = cli.build_parser()
    commands = parser._subparsers._group_actions[0].choices  # argparse internals
    assert {"validate", "render", "diff", "plan", "deploy", "health", "up"} <= set(commands)
