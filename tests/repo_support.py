"""The repository's root, for tests (imported by name: tests/ is on sys.path via its conftest).

The one place tests derive it from; everything else (chart, deployments,
fixtures) is a path below it.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "tests" / "fixtures"
