"""What each part of src/pangeo_cloud may import, read from the source with ast.

- Code that runs in the hub, gateway or broker pods (upstream images without our
  wheel) imports only the standard library, what those images have, and our
  modules shipped with it.
- The module-level import graph has no cycle, and no arrow from a lower layer
  to a higher one (:data:`LAYERS`). Imports under ``if TYPE_CHECKING:`` only
  name types for annotations and never run, so they are not arrows.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import pangeo_cloud

PACKAGE = Path(pangeo_cloud.__file__).parent

# Pod-side code: where it runs, what third-party packages that image has, and
# which of our modules it may import (the chart ships exactly those).
SIDES = {
    # aiohttp: dask-gateway-server's own web framework, so in every gateway image.
    "gateway": (
        {"dask_gateway_server", "traitlets", "aiohttp"},
        ("pangeo_cloud.scratch", "pangeo_cloud.gateway"),
    ),
    # The k8s-hub image: JupyterHub with its tornado, traitlets and prometheus_client
    # (JupyterHub's /hub/metrics), KubeSpawner, OAuthenticator, and PyYAML (z2jh's
    # hub config reads its mounted values with it).
    "hub": (
        {
            "jupyterhub",
            "tornado",
            "traitlets",
            "prometheus_client",
            "yaml",
            "kubespawner",
            "oauthenticator",
        },
        ("pangeo_cloud.scratch", "pangeo_cloud.hub"),
    ),
}
# Shipped to both pods and loaded before anything else of ours: standard library only.
STDLIB_ONLY = ["__init__.py", "scratch.py", "bundle.py"]

# Lowest first. A module may import its own package and lower layers; packages
# of one layer (the pod sides; deploy and local) import nothing of each other.
LAYERS: list[set[str]] = [
    # shared by everything: the package itself, error root, ports, tool cache, the
    # bundle loader and the scratch settings both pods read
    {"pangeo_cloud", "errors", "ports", "toolcache", "bundle", "scratch"},
    {"hub", "gateway", "broker"},  # runs in the hub, gateway and broker processes
    {"config"},  # files -> config model -> merged values
    {"deploy", "local"},  # helm and the cluster; the same values on this machine
    {"commands", "cli"},  # the command line
    {"testing"},  # stand-ins and harnesses for the tests
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imported_names(tree: ast.Module, module_level: bool) -> Iterator[str]:
    """Dotted names imported (module level: not inside functions or classes)."""
    nodes = list(_top_level(tree.body)) if module_level else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    for node in body:
        if _type_checking_only(node):
            continue  # `if TYPE_CHECKING:` imports never run: no cycle at import time
        yield node
        if isinstance(node, ast.If | ast.Try | ast.With):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    yield from _top_level([child])
                elif isinstance(child, ast.ExceptHandler):
                    yield from _top_level(child.body)


def _type_checking_only(node: ast.stmt) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"


def import_graph() -> dict[str, set[str]]:
    """Our module -> our modules it imports at module level."""
    graph = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        targets = {n for n in _imported_names(tree, module_level=True) if n in MODULES}
        graph[name] = targets - {name}
    return graph


def _part(module: str) -> str:
    """The top-level part of our package a module belongs to ("pangeo_cloud" itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _layer(module: str) -> int:
    part = _part(module)
    for index, names in enumerate(LAYERS):
        if part in names:
            return index
    raise AssertionError(f"{module}: its part {part!r} is in no layer of LAYERS; add it")


def _pod_files() -> list[Path]:
    return [path for side in SIDES for path in sorted((PACKAGE / side).glob("*.py"))]


@pytest.mark.parametrize("path", _pod_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_pod_side_modules_import_only_what_their_image_has(path: Path) -> None:
    allowed, ours = SIDES[path.parent.name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for name in _imported_names(tree, module_level=False):
        top = name.split(".")[0]
        if top == "pangeo_cloud":
            assert name.startswith(ours), f"{path.name} imports {name}"
        else:
            assert top in sys.stdlib_module_names or top in allowed, f"{path.name}: {name}"


@pytest.mark.parametrize("name", STDLIB_ONLY)
def test_modules_shipped_to_both_pods_import_only_the_standard_library(name: str) -> None:
    tree = ast.parse((PACKAGE / name).read_text(encoding="utf-8"))
    for imported in _imported_names(tree, module_level=False):
        top = imported.split(".")[0]
        assert top in sys.stdlib_module_names, f"{name} imports {imported}"


def test_every_module_is_in_a_layer() -> None:
    for module in MODULES:
        _layer(module)


def test_the_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycle = path[path.index(target) :] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_imports_go_down_the_layers() -> None:
    wrong = []
    for source, targets in import_graph().items():
        for target in targets:
            same_part = _part(source) == _part(target)
            if same_part or target == "pangeo_cloud":
                continue
            if _layer(target) > _layer(source):
                wrong.append(f"{source} -> {target} (a higher layer)")
            elif _layer(target) == _layer(source) and _layer(source) > 0:
                wrong.append(f"{source} -> {target} (a sibling of the same layer)")
    assert not wrong, "\n".join(sorted(wrong))


def test_the_checks_see_a_known_cycle_and_an_upward_arrow(monkeypatch) -> None:
    """The graph checks can fail: a made-up loop and arrow are found."""
    fake = {"pangeo_cloud.config.a": {"pangeo_cloud.config.b"}, "pangeo_cloud.config.b": set()}
    fake["pangeo_cloud.config.b"].add("pangeo_cloud.config.a")
    fake["pangeo_cloud.config.c"] = {"pangeo_cloud.commands.x"}
    fake["pangeo_cloud.commands.x"] = set()
    monkeypatch.setattr(sys.modules[__name__], "import_graph", lambda: fake)
    with pytest.raises(AssertionError, match="import cycle"):
        test_the_import_graph_has_no_cycle()
    with pytest.raises(AssertionError, match=r"config\.c -> pangeo_cloud\.commands\.x"):
        test_imports_go_down_the_layers()


# Small focused modules: a longer one holds several concerns (test support excepted).
MAX_MODULE_LINES = 450


def test_no_module_outside_testing_is_longer_than_the_limit() -> None:
    long = {
        name: lines
        for name, path in MODULES.items()
        if not name.startswith("pangeo_cloud.testing")
        and (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"split these modules (over {MAX_MODULE_LINES} lines): {long}"
