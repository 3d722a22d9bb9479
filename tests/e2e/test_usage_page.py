"""The usage page in a real browser: admins see who used what, others are refused.

`pangeo-cloud up` with GitHub login through the GitHub stand-in, ``adele`` in
the admin team and ``ada`` in the allowed team only, Prometheus scraping every
second. ada starts a server; adele opens ``/services/usage/`` (JupyterHub OAuth
through the hub) and reads ada's server-hours and cost in the table; ada, no
admin, is refused. The spawn page shows each size's relative cost.
"""

from __future__ import annotations

import re
import time

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(600)]

SERVER_READY_MS = 180_000


def github_login(page, hub, standin, user: str) -> None:
    standin.next_user = user
    page.goto(hub.url)
    page.wait_for_url(re.compile(r".*/hub/login.*"))
    page.get_by_text(re.compile("Sign in with GitHub", re.I)).click()


def test_admin_sees_usage_and_others_are_refused(browser, github_admin_hub, github_standin):
    hub = github_admin_hub
    ada = browser.new_context(viewport={"width": 1400, "height": 900})
    ada.set_default_timeout(30_000)
    page = ada.new_page()
    github_login(page, hub, github_standin, "ada")
    page.wait_for_selector(".pangeo-profiles", timeout=60_000)
    # The nudge: each size says what it costs next to the smallest.
    small = page.locator("label[for='profile-item-small']").inner_text()
    medium = page.locator("label[for='profile-item-medium']").inner_text()
    assert "1× the cost of Small" in small and "2× the cost of Small" in medium
    page.check("#profile-item-small")
    page.locator('form input[type="submit"], form button[type="submit"]').first.click()
    page.wait_for_url(re.compile(r".*/user/ada/lab.*"), timeout=SERVER_READY_MS)
    time.sleep(5)  # a few one-second scrapes of ada's running server

    admin = browser.new_context(viewport={"width": 1400, "height": 900})
    admin.set_default_timeout(30_000)
    admin_page = admin.new_page()
    github_login(admin_page, hub, github_standin, "adele")
    admin_page.wait_for_selector(".pangeo-profiles", timeout=60_000)
    admin_page.goto(f"{hub.url}services/usage/?since=1h")
    row = admin_page.locator("tr.usage-row[data-key='ada']")
    row.wait_for(timeout=60_000)
    cells = row.locator("td").all_inner_texts()
    server_hours, cost = float(cells[0]), float(cells[5])
    assert server_hours > 0 and cost > 0, cells
    assert "Usage of local/dev" in admin_page.locator("h1").inner_text()

    # ada is no admin: the hub's OAuth or the page itself refuses her.
    response = page.goto(f"{hub.url}services/usage/")
    assert response is not None and response.status == 403
    assert not page.locator("tr.usage-row").count()
    ada.close()
    admin.close()
