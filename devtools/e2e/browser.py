"""The one browser test's steps: Playwright (PyPI) driving Debian's chromium, never a downloaded browser."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 60_000


@contextmanager
def signed_in_page(base_url: str, username: str, password: str) -> Iterator[Any]:
    """A page of a fresh Chromium, signed in through the simple auth manager's login form."""
    from playwright.sync_api import sync_playwright  # only `make e2e` installs it

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{base_url}/")
            page.get_by_label("Username").fill(username)
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(lambda url: "/auth/login" not in url)
            yield page
        finally:
            browser.close()


def trigger_with_defaults(page: Any, base_url: str, dag_id: str, screenshot: Path) -> None:
    """Open the DAG's trigger form, save a screenshot of it, and press Trigger without touching a field."""
    page.goto(f"{base_url}/dags/{dag_id}")
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Run Parameters").wait_for()
    page.wait_for_load_state("networkidle")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshot), full_page=True)
    button = dialog.get_by_role("button", name="Trigger", exact=True)
    if not button.is_enabled():
        raise AssertionError(f"Trigger is disabled with the form's defaults; see {screenshot}")
    button.click()
    dialog.wait_for(state="hidden")


def find_run(page: Any, base_url: str, dag_id: str, run_id: str, screenshot: Path) -> None:
    """The run is listed on the DAG's Runs page."""
    page.goto(f"{base_url}/dags/{dag_id}/runs")
    page.get_by_text(run_id).first.wait_for()
    page.screenshot(path=str(screenshot), full_page=True)


def screenshot_hitl_task(
    page: Any, base_url: str, dag_id: str, run_id: str, task: str, map_index: int, shot: Path
) -> None:
    """The Required Actions tab of a mapped task instance awaiting a person, once its Approve button shows.

    The screenshot is saved even when the button never shows, to see why.
    """
    path = f"/dags/{dag_id}/runs/{quote(run_id, safe='')}/tasks/{task}/mapped/{map_index}/required_actions"
    page.goto(f"{base_url}{path}")
    try:
        page.get_by_role("button", name="Approve", exact=True).wait_for()
        page.wait_for_load_state("networkidle")
    finally:
        page.screenshot(path=str(shot), full_page=True)
