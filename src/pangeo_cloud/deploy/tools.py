"""Finding and running external tools (helm, sops, ...) with clear failures.

Tools are looked up on $PATH, then in the tool cache (:mod:`pangeo_cloud.toolcache`).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from pangeo_cloud.errors import PangeoError
from pangeo_cloud.toolcache import find, tools_dir


class ToolError(PangeoError):
    """An external tool is missing or failed; the message is one clear line."""


def find_tool(name: str) -> str:
    """The path of `name`: $PATH first, then the project's tool cache."""
    found = find(name)
    if found:
        return found
    raise ToolError(
        f"`{name}` not found on PATH or in {tools_dir()}; run scripts/install-go-tools.sh "
        "(or `make tools`) to build it"
    )


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def run(
    args: list[str],
    *,
    check: bool = True,
    input: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = 600,
) -> Result:
    """Run a tool; with `check`, a failure raises ToolError with its last stderr line."""
    proc = subprocess.run(
        args, input=input, capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    result = Result(list(args), proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise ToolError(
            f"{Path(args[0]).name} {args[1] if len(args) > 1 else ''} failed: "
            f"{last_line(proc.stderr or proc.stdout)}"
        )
    return result


def last_line(text: str) -> str:
    """The most telling line of a tool's output: its first error line, else its last."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("Error:", "[ERROR]", "error:")) and "chart(s) linted" not in line:
            return line
    return lines[-1] if lines else "(no output)"
