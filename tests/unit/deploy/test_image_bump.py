"""scripts/bump_notebook_image.py on a copy of the repository."""

from __future__ import annotations

import importlib.util

from repo_support import REPO_ROOT

from pangeo_cloud.config import Paths
from pangeo_cloud.deploy.validate import validate_all


def _script():
    spec = importlib.util.spec_from_file_location(
        "bump_notebook_image", REPO_ROOT / "scripts" / "bump_notebook_image.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bump_changes_every_pin_and_stays_valid(repo_copy: Paths, capsys) -> None:
    bump = _script()
    name, old = bump.read_image(repo_copy.root)
    assert bump.main(["--tag", "2099.01.02", "--root", str(repo_copy.root)]) == 0
    assert "bumped" in capsys.readouterr().out
    assert bump.read_image(repo_copy.root) == (name, "2099.01.02")
    dockerfile = (repo_copy.images / "notebook" / "Dockerfile").read_text()
    assert f"FROM {name}:2099.01.02" in dockerfile
    for file in [
        repo_copy.chart / "values.yaml",
        *repo_copy.root.glob("deployments/*/values/*.yaml"),
        repo_copy.images / "notebook" / "image.yaml",
    ]:
        assert old not in file.read_text(), file
    assert '"2099.01.02"' in (repo_copy.chart / "values.yaml").read_text()
    # The bumped tree still passes validate (the image checks included).
    results = validate_all(["gcp-us-central1-b/staging"], repo_copy)
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    assert bump.main(["--tag", "2099.01.02", "--root", str(repo_copy.root)]) == 0
    assert "already at 2099.01.02" in capsys.readouterr().out


def test_set_versions() -> None:
    bump = _script()
    text = 'packages:\n  dask-gateway: "2026.3.0"\n  distributed: "2026.8.0"\n'
    out = bump.set_versions(text, {"distributed": "2026.9.1"})
    assert out == 'packages:\n  dask-gateway: "2026.3.0"\n  distributed: "2026.9.1"\n'
