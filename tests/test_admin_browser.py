"""In a real browser (Debian's Chromium, driven by Playwright): a staff user signs in with
password + TOTP, uploads a Markdown file and a PDF to a dataset, and watches both become
``ready`` in the ingestion monitor, with a real Celery worker doing the work.

No browser is ever downloaded: ``make test`` installs Debian's ``chromium`` and this test fails
(never skips) if /usr/bin/chromium is missing. ``UPDATE_SCREENSHOTS=1`` writes the screenshot
to docs/img/ (the one the README shows); otherwise to .data/screenshots/.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from knowledge.models import Document
from knowledge.tests.factories import DatasetFactory, DocumentFactory
from knowledge.tests.fixtures import make_pdf
from tenants.tests.factories import TenantFactory
from tests.processes import ROOT, celery_worker, child_env
from tests.staff import PASSWORD, code, make_staff

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def screenshot_path() -> Path:
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        return ROOT / "docs" / "img" / "admin-ingestion-monitor.png"
    return ROOT / ".data" / "screenshots" / "admin-ingestion-monitor.png"


def sign_in(page: Page, username: str, token: str) -> None:
    """The login form with password and TOTP code, the page already on it."""
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.fill("#id_otp_token", token)
    page.click("input[type=submit]")


def launch(playwright: Playwright) -> Browser:
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing. `make test` installs Debian's chromium (apt-get install "
        "chromium); the admin's browser tests cannot run without it."
    )
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )


def test_staff_signs_in_with_totp_uploads_and_sees_documents_become_ready(live_server, tmp_path):
    tenant = TenantFactory(slug="acme", name="Acme Inc.")
    dataset = DatasetFactory(tenant=tenant, name="Handbook")
    user, device = make_staff(tenant, "alice")
    guide = tmp_path / "refund-policy.md"
    guide.write_text("# Refunds\n\nRefunds are paid within 14 days.\n\n## Exceptions\n\nNone.\n")
    report = tmp_path / "annual-report.pdf"
    report.write_bytes(make_pdf(["Revenue grew by 12 percent.", "Costs fell by 3 percent."]))
    token = code(device)
    base = live_server.url
    worker_log = tmp_path / "worker.log"

    with celery_worker(child_env(), worker_log), sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 800})
        try:
            # Password alone shows the form again; the admin stays closed.
            page.goto(f"{base}/admin/knowledge/dataset/")
            expect(page).to_have_url(f"{base}/admin/login/?next=/admin/knowledge/dataset/")
            page.fill("#id_username", user.username)
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            expect(page.locator(".errornote")).to_contain_text("authenticator code")

            sign_in(page, user.username, token)
            expect(page).to_have_url(f"{base}/admin/knowledge/dataset/")

            page.click("text=Upload…")
            expect(page).to_have_url(f"{base}/admin/knowledge/dataset/{dataset.pk}/upload/")
            page.set_input_files("#id_documents", [str(guide), str(report)])
            page.fill("#id_tags", "handbook, 2026")
            page.click("#upload-form input[type=submit]")

            expect(page).to_have_url(
                f"{base}/admin/knowledge/document/?dataset__id__exact={dataset.pk}"
            )
            expect(page.locator(".messagelist")).to_contain_text("Queued 2 document(s)")
            # The monitor refreshes itself while anything is queued or processing.
            expect(page.locator("#count-ready")).to_have_text("ready: 2", timeout=120_000)
            expect(page.locator("#count-failed")).to_have_text("failed: 0")
            expect(page.locator("#result_list")).to_contain_text("refund-policy.md")
            expect(page.locator("#result_list")).to_contain_text("annual-report.pdf")
            path = screenshot_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(path), full_page=True)
        except AssertionError:
            raise AssertionError(worker_log.read_text()[-3000:]) from None
        finally:
            browser.close()

    documents = Document.objects.for_tenant(tenant).filter(dataset=dataset)
    assert sorted(documents.values_list("status", flat=True)) == ["ready", "ready"]
    assert all(d.tags == ["handbook", "2026"] and d.chunk_count >= 1 for d in documents)


def test_the_monitor_does_not_reload_under_the_users_hands(live_server, settings):
    """The monitor reloaded itself every few seconds while documents were queued, whatever the
    user was doing: text typed into the search box and not yet searched for was thrown away.
    Now it waits while a field has the focus or holds unsent text, and goes on after."""
    settings.ADMIN_MONITOR_REFRESH_SECONDS = 1
    tenant = TenantFactory(slug="acme")
    dataset = DatasetFactory(tenant=tenant, name="Handbook")
    DocumentFactory(tenant=tenant, dataset=dataset, status="queued")  # no worker: stays queued
    user, device = make_staff(tenant, "alice")
    token = code(device)  # before the browser: Playwright's loop makes the database refuse
    base = live_server.url
    monitor = f"{base}/admin/knowledge/document/"
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page()
        try:
            page.goto(monitor)
            sign_in(page, user.username, token)
            expect(page).to_have_url(monitor)
            reloaded = "() => window.stillHere === undefined"
            page.evaluate("window.stillHere = true")
            page.wait_for_function(reloaded, timeout=10_000)  # it does refresh itself
            page.fill("#searchbar", "refund")
            page.evaluate("window.stillHere = true")
            page.wait_for_timeout(3_000)  # three refresh intervals
            assert page.evaluate("window.stillHere") is True
            assert page.input_value("#searchbar") == "refund"
            page.fill("#searchbar", "")  # the text taken back and the field left:
            page.locator("#searchbar").blur()
            page.wait_for_function(reloaded, timeout=10_000)  # the refreshing goes on
        finally:
            browser.close()
