"""Import our server-side package from a {module name: source} mapping.

The hub and gateway pods run upstream images without our wheel. The chart ships
our modules as text (a ConfigMap for the hub, generated extraConfig for the
gateway); this finder makes them importable under their real names, so the
code that runs there is exactly the code in src/ that the tests import.
Standard library only: it runs before anything of ours is importable.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

_INIT = ".__init__"


class SourceBundleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds and loads modules whose source is held in memory."""

    def __init__(self, sources: dict[str, str]) -> None:
        # Keys are dotted names; a package's key ends in ".__init__".
        self.sources = dict(sources)

    def _source(self, fullname: str) -> tuple[str, bool] | None:
        if fullname + _INIT in self.sources:
            return self.sources[fullname + _INIT], True
        if fullname in self.sources:
            return self.sources[fullname], False
        return None

    def find_spec(self, fullname, path=None, target=None):  # importlib API
        found = self._source(fullname)
        if found is None:
            return None
        return importlib.util.spec_from_loader(
            fullname, self, origin=f"pangeo-cloud-bundle:{fullname}", is_package=found[1]
        )

    def create_module(self, spec):  # importlib API
        return None  # the default module object

    def exec_module(self, module) -> None:  # importlib API
        found = self._source(module.__name__)
        assert found is not None
        filename = module.__name__.replace(".", "/") + ("/__init__.py" if found[1] else ".py")
        module.__file__ = f"<pangeo-cloud-bundle>/{filename}"
        exec(compile(found[0], module.__file__, "exec"), module.__dict__)


def install(sources: dict[str, str]) -> SourceBundleFinder:
    """Make the bundled modules importable, ahead of anything installed."""
    finder = SourceBundleFinder(sources)
    sys.meta_path.insert(0, finder)
    return finder


def read_directory(directory: str | Path) -> dict[str, str]:
    """Read flat `pangeo_cloud.x.y.py` files (as in the hub-code ConfigMap)."""
    out = {}
    for file in sorted(Path(directory).glob("pangeo_cloud*.py")):
        out[file.name[: -len(".py")]] = file.read_text(encoding="utf-8")
    return out
