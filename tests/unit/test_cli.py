"""The CLI turns every failure into one line on stderr and a non-zero exit."""

from __future__ import annotations

import pytest

from pangeo_cloud import cli
from pangeo_cloud.commands import render


def _fail_with(exc: BaseException):
    def run(args):
        raise exc

    return run


@pytest.mark.parametrize(
    ("exc", "code", "needle"),
    [
        (RuntimeError("boom"), 2, "internal error: RuntimeError: boom"),
        (FileNotFoundError("no such file: x.yaml"), 1, "error: no such file: x.yaml"),
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
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse internals
    assert {"validate", "render", "diff", "plan", "deploy", "health", "up"} <= set(commands)
