"""What the user docs promise, done in a real browser against a real `pangeo-cloud up`.

Log in, pick a hardware profile, work in JupyterLab, write Zarr to
``$PANGEO_SCRATCH`` (a write into another user's prefix is refused), start a
Dask cluster with ``GatewayCluster()`` and no arguments and open its dashboard
link, log out; a second user cannot see the first user's home; with GitHub
login, someone outside the allowed teams is refused with a readable page.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from pangeo_cloud.local import objectstore

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(600)]

SERVER_READY_MS = 180_000  # a server's first start on 2 cores, with other tests running
CELL_MS = 240_000  # the Dask cell: cluster start, 2 workers, compute, shutdown

NOTEBOOK_CELLS = [
    'import os\nprint("SCRATCH=" + os.environ["PANGEO_SCRATCH"])',
    "import numpy as np, s3fs, zarr\n"
    "fs = s3fs.S3FileSystem()\n"
    'store = s3fs.S3Map(os.environ["PANGEO_SCRATCH"] + "e2e.zarr", s3=fs)\n'
    'z = zarr.open(store, mode="w", shape=(100,), chunks=(10,), dtype="i4")\n'
    "z[:] = np.arange(100)\n"
    'back = zarr.open(store, mode="r")\n'
    'print("ZARR-OK", int(back[:].sum()), back.shape[0])',
    # Another user's prefix: the notebook's credentials reach only its own.
    'other = s3fs.S3Map(os.environ["PANGEO_SCRATCH"].rsplit("/", 2)[0] + "/dave/x.zarr", s3=fs)\n'
    "try:\n"
    '    zarr.open(other, mode="w", shape=(10,), chunks=(5,), dtype="i4")[:] = 1\n'
    '    print("OTHER-WRITTEN")\n'
    "except PermissionError as exc:\n"
    '    print("OTHER-REFUSED", type(exc).__name__)',
    "import dask.array as da\n"
    "from dask_gateway import GatewayCluster\n"
    "cluster = GatewayCluster()\n"
    "cluster.scale(2)\n"
    "client = cluster.get_client()\n"
    "client.wait_for_workers(2, timeout=180)\n"
    "total = int(da.arange(1000, chunks=100).sum().compute())\n"
    'workers = len(client.scheduler_info()["workers"])\n'
    "client.close()\n"
    "cluster.shutdown()\n"
    'print("DASK-OK", total, workers)',
]


def notebook(cells: list[str]) -> dict:
    return {
        "type": "notebook",
        "content": {
            "nbformat": 4,
            "nbformat_minor": 5,
            "metadata": {
                "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
            },
            "cells": [
                {
                    "cell_type": "code",
                    "id": f"cell-{i}",
                    "metadata": {},
                    "source": source,
                    "outputs": [],
                    "execution_count": None,
                }
                for i, source in enumerate(cells)
            ],
        },
    }


def log_in(page, url: str, user: str, password: str) -> None:
    page.goto(url)
    page.wait_for_url(re.compile(r".*/hub/login.*"))
    page.fill("#username_input", user)
    page.fill("#password_input", password)
    page.click("#login_submit")


def start_profile(page, slug: str) -> None:
    page.check(f"#profile-item-{slug}")
    page.locator('form input[type="submit"], form button[type="submit"]').first.click()
    wait_for_lab(page)


def wait_for_lab(page) -> None:
    page.wait_for_url(re.compile(r".*/user/[^/]+/lab.*"), timeout=SERVER_READY_MS)
    page.wait_for_selector("#jp-main-dock-panel", timeout=SERVER_READY_MS)
    page.wait_for_selector(".jp-DirListing-content", timeout=SERVER_READY_MS)


def run_all_cells(page, attempts: int = 4) -> None:
    """Run > Run All Cells, again if the notebook was not ready to take it."""
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
    prompts = page.locator(".jp-Notebook .jp-InputArea-prompt")
    for _ in range(attempts):
        page.locator(".jp-Notebook .jp-Cell").first.click()
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if any(re.search(r"\[(\*|\d+)\]", t) for t in prompts.all_inner_texts()):
                return
            page.wait_for_timeout(250)
    raise AssertionError("Run All Cells did not start the notebook's cells")


def user_xsrf(page, url: str, user: str) -> str:
    cookies = page.context.cookies(f"{url}user/{user}/")
    return next((c["value"] for c in cookies if c["name"] == "_xsrf"), "")


def test_scientist_logs_in_works_with_scratch_and_dask_and_logs_out(page, hub):
    url, user = hub.url, "alice"
    log_in(page, url, user, hub.password)

    # The profile list of the deployment, without the operators-only profile.
    page.wait_for_selector(".pangeo-profiles")
    names = page.locator(".pangeo-profile strong").all_inner_texts()
    assert names == ["Small", "Medium", "Large"]
    assert "1 CPU, 2 GB RAM" in page.locator("label[for=profile-item-small]").inner_text()
    assert page.locator("#profile-item-small").is_checked()  # the default
    start_profile(page, "small")

    # A notebook made through the contents API, run through the UI.
    resp = page.request.put(
        f"{url}user/{user}/api/contents/pangeo-e2e.ipynb",
        data=json.dumps(notebook(NOTEBOOK_CELLS)),
        headers={"X-XSRFToken": user_xsrf(page, url, user), "Content-Type": "application/json"},
    )
    assert resp.status in (200, 201), resp.text()
    page.goto(f"{url}user/{user}/lab/tree/pangeo-e2e.ipynb")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=SERVER_READY_MS)
    run_all_cells(page)

    outputs = page.locator(".jp-OutputArea-output")
    scratch = f"SCRATCH=s3://pangeo-scratch/{user}/"
    page.get_by_text(scratch).wait_for(timeout=120_000)
    page.get_by_text("ZARR-OK 4950 100").wait_for(timeout=120_000)
    page.get_by_text("OTHER-REFUSED PermissionError").wait_for(timeout=120_000)
    page.get_by_text("DASK-OK 499500 2").wait_for(timeout=CELL_MS)
    assert "Traceback" not in "\n".join(outputs.all_inner_texts())

    # The Zarr store really is in the scratch bucket, under this user's prefix only.
    store = hub.runtime["store"]
    client = objectstore.s3_client(store["endpoint"], store["access_key"], store["secret_key"])
    keys = [
        o["Key"]
        for o in client.list_objects_v2(Bucket="pangeo-scratch", Prefix=f"{user}/e2e.zarr/").get(
            "Contents", []
        )
    ]
    assert any(k.endswith("zarr.json") or k.endswith(".zarray") for k in keys), keys
    assert "Contents" not in client.list_objects_v2(Bucket="pangeo-scratch", Prefix="dave/")
    assert objectstore.expiry_days_of(client, "pangeo-scratch") == 7

    # Log out from JupyterLab's File menu; the server's pages then need a login.
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^File$")).click()
    page.locator(".lm-Menu-itemLabel:visible", has_text=re.compile(r"^Log Out$")).first.click()
    page.wait_for_url(re.compile(r".*/hub/(login|logout).*"), timeout=60_000)
    page.goto(f"{url}user/{user}/lab")
    page.wait_for_url(re.compile(r".*/hub/login.*"), timeout=60_000)
    assert page.locator("#login_submit").is_visible()


def test_second_user_cannot_see_first_users_home(page, hub):
    alice_home = hub.data_dir / "homes" / "alice"
    alice_home.mkdir(parents=True, exist_ok=True)
    (alice_home / "alice-private-notes.txt").write_text("only for alice\n")

    url, user = hub.url, "bob"
    log_in(page, url, user, hub.password)
    page.wait_for_selector(".pangeo-profiles")
    start_profile(page, "small")

    # Bob's file browser shows his own (new, empty) home.
    page.wait_for_timeout(1000)
    listing = page.locator(".jp-DirListing-content").inner_text()
    assert "alice-private-notes" not in listing
    assert "pangeo-e2e" not in listing

    # Neither Alice's server nor a path out of Bob's root reaches her files.
    foreign = page.request.get(f"{url}user/alice/api/contents", max_redirects=10)
    assert foreign.status != 200 or "alice-private-notes" not in foreign.text()
    assert "alice-private-notes" not in foreign.text()
    escape = page.request.get(f"{url}user/{user}/api/contents/..%2Falice")
    assert escape.status in (403, 404), escape.status
    own = page.request.get(f"{url}user/{user}/api/contents")
    assert own.status == 200
    assert [item["name"] for item in own.json()["content"]] == []


def test_github_member_of_allowed_team_gets_in(page, github_hub, github_standin):
    github_standin.next_user = "ada"
    page.goto(github_hub.url)
    page.wait_for_url(re.compile(r".*/hub/login.*"))
    page.get_by_text(re.compile("Sign in with GitHub", re.I)).click()
    page.wait_for_selector(".pangeo-profiles", timeout=60_000)
    assert page.locator(".pangeo-profile strong").all_inner_texts() == ["Small", "Medium", "Large"]


def test_github_user_outside_allowed_teams_sees_refusal(page, github_hub, github_standin):
    github_standin.next_user = "mallory"
    page.goto(github_hub.url)
    page.wait_for_url(re.compile(r".*/hub/login.*"))
    page.get_by_text(re.compile("Sign in with GitHub", re.I)).click()
    refusal = page.locator(".pangeo-refusal")
    refusal.wait_for(timeout=60_000)
    text = refusal.inner_text()
    assert "not a member of any GitHub team allowed" in text
    assert "pangeo-data:e2e-users" in text
    assert page.locator(".pangeo-access-help a").get_attribute("href").startswith("https://")
    # Refused means no session: the hub still asks for a login.
    page.goto(f"{github_hub.url}hub/home")
    deadline = time.monotonic() + 30
    while "/hub/login" not in page.url and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert "/hub/login" in page.url


DASHBOARD_CELLS = [
    "from dask_gateway import GatewayCluster\n"
    "cluster = GatewayCluster()\n"
    'print("DASHBOARD", cluster.dashboard_link, sep="=")',
]


def test_dashboard_link_opens_the_dask_dashboard_through_the_hub(page, hub):
    url, user = hub.url, "dina"
    log_in(page, url, user, hub.password)
    page.wait_for_selector(".pangeo-profiles")
    start_profile(page, "small")
    resp = page.request.put(
        f"{url}user/{user}/api/contents/dashboard.ipynb",
        data=json.dumps(notebook(DASHBOARD_CELLS)),
        headers={"X-XSRFToken": user_xsrf(page, url, user), "Content-Type": "application/json"},
    )
    assert resp.status in (200, 201), resp.text()
    page.goto(f"{url}user/{user}/lab/tree/dashboard.ipynb")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=SERVER_READY_MS)
    # JupyterLab may ask which kernel to use for a notebook made through the API.
    page.wait_for_selector(
        ".jp-Dialog, .jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000
    )
    if page.locator(".jp-Dialog").count():
        page.locator(".jp-Dialog button", has_text=re.compile(r"^Select$")).click()
    run_all_cells(page)
    output = page.locator(".jp-OutputArea-output", has_text="DASHBOARD=")
    output.wait_for(timeout=CELL_MS)
    link = re.search(r"DASHBOARD=(\S+)", output.inner_text()).group(1)
    # The link in the cluster's repr, as a scientist clicks it: through the hub's proxy.
    assert re.fullmatch(r"/services/dask-gateway/clusters/[0-9a-f]+/status", link), link

    dashboard = page.context.new_page()
    answer = dashboard.goto(url.rstrip("/") + link)
    assert answer is not None and answer.status == 200, answer and answer.status
    # Bokeh renders the scheduler's status page (task stream, progress ...).
    try:
        dashboard.wait_for_function("document.title.includes('Dask')", timeout=60_000)
    except PlaywrightTimeoutError:  # say what came instead (e.g. "Dask needs bokeh")
        raise AssertionError(f"title {dashboard.title()!r}: {dashboard.content()[:1500]}") from None
    dashboard.wait_for_selector(".bk-Canvas, .bk-root, [class^='bk']", timeout=120_000)
    dashboard.close()
