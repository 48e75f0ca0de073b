"""The local mailbox page in a real browser: headless Chromium (Debian's chromium and chromium-driver).

A send over HTTP to the local run appears on the page without a reload; its HTML body is rendered
with its inline image, a script in it does not run, and its attachment downloads identical.
With ``M365SEND_SCREENSHOTS=<dir>`` the test also saves the two screenshots the README shows.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LocalRun, start_local_run
from tests.test_mailbox import png

selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402 - after the skip that explains a missing package
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

SUBJECT = "Your quarterly report"
REPORT = os.urandom(200_000)  # an attachment of random bytes: identical or not, nothing in between
MESSAGE = {
    "To": [{"Address": "ann@fabrikam.com"}, {"Address": "bob@fabrikam.com", "Name": "Bob Jones"}],
    "Cc": "carol@fabrikam.com",
    "ReplyTo": "help@contoso.com",
    "From": {"Address": "notifications@contoso.com"},
    "Subject": SUBJECT,
    "BodyFormat": "Html",
    "Body": (
        "<h1 style='font-family: sans-serif; color: #0f6cbd'>Quarterly report</h1>"
        '<p id="victim">original</p>'
        '<p>Our logo: <img id="logo" src="cid:logo" width="48" height="48" alt="logo"></p>'
        "<script>document.getElementById('victim').textContent = 'script ran'</script>"
        "<p>The figures are attached.</p>"
    ),
    "Priority": "High",
    "Categories": ["Finance"],
    "Headers": {"X-Ticket": "INC-42"},
    "Attachments": [
        {
            "Name": "logo.png",
            "ContentBytes": base64.b64encode(png(48, 48)).decode(),
            "IsInline": True,
            "ContentId": "logo",
        },
        {"Name": "report.pdf", "ContentBytes": base64.b64encode(REPORT).decode(), "ContentType": "application/pdf"},
    ],
}


def _chromedriver() -> str:
    found = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else "")
    if not found:
        if os.environ.get("CI"):
            pytest.fail("CI installs Chromium and chromedriver (.ci/run); neither was found")
        pytest.skip("needs Debian's chromium and chromium-driver (./scripts/test installs them when run as root)")
    return found


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    yield from start_local_run(tmp_path_factory.mktemp("mailbox") / "env")


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads: Path) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900"):
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(service=Service(_chromedriver()), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    yield driver
    driver.quit()


def _send(local: LocalRun, message: dict[str, Any], **headers: str) -> None:
    response = httpx.post(f"{local.base}/send", params={"code": local.key}, json=message, headers=headers)
    assert response.status_code == 202, response.text


def _open(browser: Any, local: LocalRun) -> None:
    browser.get(local.base.removesuffix("/api") + "/_mailbox")
    WebDriverWait(browser, 10).until(expected_conditions.presence_of_element_located((By.ID, "list")))


def _select(browser: Any, subject: str) -> None:
    item = WebDriverWait(browser, 15).until(
        lambda d: next(
            (e for e in d.find_elements(By.CSS_SELECTOR, "[data-testid=message]") if subject in e.text), None
        )
    )
    item.click()
    WebDriverWait(browser, 10).until(
        expected_conditions.text_to_be_present_in_element((By.CSS_SELECTOR, "#view h2"), subject)
    )


def test_a_message_sent_over_http_appears_without_a_reload(browser: Any, local: LocalRun) -> None:
    _open(browser, local)
    loaded = browser.execute_script("return performance.timeOrigin")

    _send(local, {**MESSAGE, "Subject": "Arrives while the page is open"})

    _select(browser, "Arrives while the page is open")
    assert browser.execute_script("return performance.timeOrigin") == loaded  # the same page, not reloaded


def test_the_message_view_shows_its_headers_and_send_record(browser: Any, local: LocalRun) -> None:
    _send(local, MESSAGE, **{"Idempotency-Key": "report-q3"})
    _open(browser, local)

    _select(browser, SUBJECT)

    fields = {
        cell.get_attribute("data-field"): cell.text
        for cell in browser.find_elements(By.CSS_SELECTOR, "[data-testid=headers] td")
    }
    assert fields["To"] == "ann@fabrikam.com, Bob Jones <bob@fabrikam.com>"
    assert fields["Cc"] == "carol@fabrikam.com"
    assert fields["Reply-To"] == "help@contoso.com"
    assert fields["Importance"] == "high"
    assert fields["Categories"] == "Finance"
    assert fields["Headers"] == "X-Ticket: INC-42"
    assert fields["Send record"] == "http:report-q3 — sent, 1 attempt(s)"


def test_the_html_body_renders_its_inline_image_and_runs_no_script(browser: Any, local: LocalRun) -> None:
    _send(local, {**MESSAGE, "Subject": "Rendered body"})
    _open(browser, local)
    _select(browser, "Rendered body")

    frame = browser.find_element(By.CSS_SELECTOR, "[data-testid=body-frame]")
    browser.switch_to.frame(frame)
    try:
        victim = (
            WebDriverWait(browser, 10).until(expected_conditions.presence_of_element_located((By.ID, "victim"))).text
        )
        logo = browser.find_element(By.ID, "logo")
        WebDriverWait(browser, 10).until(lambda d: logo.get_property("complete"))
        natural_width = logo.get_property("naturalWidth")
    finally:
        browser.switch_to.default_content()

    assert victim == "original"  # the script in the body did not run
    assert natural_width == 48  # the cid: image was found and decoded


def test_the_attachment_downloads_identical(browser: Any, local: LocalRun, downloads: Path) -> None:
    _send(local, {**MESSAGE, "Subject": "With a download"})
    _open(browser, local)
    _select(browser, "With a download")

    link = next(a for a in browser.find_elements(By.CSS_SELECTOR, "[data-testid=attachment]") if a.text == "report.pdf")
    link.click()

    target = downloads / "report.pdf"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (target.exists() and target.stat().st_size == len(REPORT)):
        time.sleep(0.2)
    assert target.read_bytes() == REPORT


def test_send_records_appear_on_the_storage_tab(browser: Any, local: LocalRun) -> None:
    _send(local, {**MESSAGE, "Subject": "Keyed"}, **{"Idempotency-Key": "browser-key-1"})
    _open(browser, local)

    browser.find_element(By.ID, "tab-storage").click()

    WebDriverWait(browser, 15).until(
        expected_conditions.text_to_be_present_in_element((By.CSS_SELECTOR, "[data-testid=records]"), "browser-key-1")
    )
    screenshots = os.environ.get("M365SEND_SCREENSHOTS")
    if screenshots:  # the README's pictures, regenerated on demand
        folder = Path(screenshots)
        folder.mkdir(parents=True, exist_ok=True)
        _open(browser, local)
        WebDriverWait(browser, 15).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid=message]")) >= 4)
        browser.save_screenshot(str(folder / "mailbox-list.png"))
        _select(browser, SUBJECT)
        time.sleep(1)  # the frame's image
        browser.save_screenshot(str(folder / "mailbox-message.png"))
