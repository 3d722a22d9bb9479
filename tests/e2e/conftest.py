"""A real `pangeo-cloud up` and a real Chromium, for what a scientist does in a browser.

Two runs of `pangeo-cloud up` (deployment ``local``) on free ports with
temporary data directories, each started once per session:

- ``hub``: the deployment as it is, shared-password login;
- ``github_hub``: the same deployment with GitHub login, pointed with
  ``--github-url`` at the GitHub stand-in (:mod:`pangeo_cloud.testing.github`).

Chromium is Debian's ``/usr/bin/chromium`` (``$PANGEO_CHROMIUM`` to override),
driven by Playwright; no browser is downloaded. On a failed test the page's
screenshot and the run's logs are kept in ``test-artifacts/e2e/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from repo_support import REPO_ROOT

from pangeo_cloud.testing.harness import UpProcess

ARTIFACTS = REPO_ROOT / "test-artifacts" / "e2e"
CHROMIUM = os.environ.get("PANGEO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # as root; harmless otherwise
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-gpu",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
ALLOWED_TEAM = "pangeo-data:e2e-users"
ADMIN_TEAM = "pangeo-data:e2e-admins"  # hub admins (the usage page) in `github_admin_hub`


def _require_tools() -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(
            f"Chromium not found at {CHROMIUM}: run scripts/install-system.sh "
            "(Debian package `chromium`) or set PANGEO_CHROMIUM"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright Python package is not installed (pip install -e '.[dev]')")
    from pangeo_cloud.local.runtime import LocalRuntimeError, find_proxy

    try:
        find_proxy()
    except LocalRuntimeError as exc:
        pytest.skip(str(exc))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):  # pytest hook
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _keep_logs(up: UpProcess, name: str) -> None:
    target = ARTIFACTS / name
    target.mkdir(parents=True, exist_ok=True)
    for log in ("hub", "gateway", "objectstore"):
        if up.log(log).exists():
            shutil.copy(up.log(log), target / f"{log}.log")
    (target / "up-output.txt").write_text(up.text)


def _start_up(
    tmp_path_factory, name: str, extra: list[str], env: dict[str, str] | None = None
) -> Iterator[UpProcess]:
    _require_tools()
    data = tmp_path_factory.mktemp(name) / "data"
    up = UpProcess(data_dir=data, extra_args=extra, env=env)
    try:
        up.start(timeout=240)
    except RuntimeError as exc:
        _keep_logs(up, f"{name}-start")
        pytest.fail(f"pangeo-cloud up did not start: {exc}")
    try:
        yield up
    finally:
        left = up.stop(check=False)
        if left:
            _keep_logs(up, f"{name}-teardown")
        assert not left, f"pangeo-cloud up left processes of its run alive: {left}"


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Iterator[UpProcess]:
    yield from _start_up(tmp_path_factory, "up-shared-password", [])


@pytest.fixture(scope="module")
def github_standin():
    _require_tools()
    from pangeo_cloud.testing.github import GitHubStandIn

    with GitHubStandIn() as gh:
        gh.add_user("ada", teams=[ALLOWED_TEAM])
        gh.add_user("mallory", orgs=["pangeo-data"])  # in the org, in no allowed team
        gh.add_user("adele", teams=[ALLOWED_TEAM, ADMIN_TEAM])  # an admin
        yield gh


@pytest.fixture(scope="module")
def github_hub(tmp_path_factory, github_standin) -> Iterator[UpProcess]:
    extra = [
        "--github-client-id",
        github_standin.client_id,
        "--github-client-secret",
        github_standin.client_secret,
        "--github-url",
        github_standin.url,
        "--github-allowed-team",
        ALLOWED_TEAM,
    ]
    yield from _start_up(tmp_path_factory, "up-github", extra)


@pytest.fixture(scope="module")
def github_admin_hub(tmp_path_factory, github_standin) -> Iterator[UpProcess]:
    """GitHub login with an admin team; Prometheus scrapes every second."""
    extra = [
        "--github-client-id",
        github_standin.client_id,
        "--github-client-secret",
        github_standin.client_secret,
        "--github-url",
        github_standin.url,
        "--github-allowed-team",
        ALLOWED_TEAM,
        "--github-admin-team",
        ADMIN_TEAM,
    ]
    env = dict(os.environ, PANGEO_SCRAPE_INTERVAL="1")
    yield from _start_up(tmp_path_factory, "up-github-admin", extra, env)


# Module scope, not session: Playwright's sync API keeps an event loop running
# in the main thread while it is open, and later test files call asyncio.run().
@pytest.fixture(scope="module")
def browser():
    _require_tools()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=60_000
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    yield page
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        name = request.node.name
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        try:
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        except Exception as exc:  # the page may be gone; keep the logs anyway
            (ARTIFACTS / f"{name}.screenshot-error.txt").write_text(str(exc))
        for fixture in ("hub", "github_hub"):
            if fixture in request.fixturenames:
                _keep_logs(request.getfixturevalue(fixture), name)
    context.close()
