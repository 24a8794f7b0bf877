"""/docs in a real headless Chromium, with every request outside the service refused: sign up,
Authorize with the password form, call /users/me; screenshots land in build/docs/."""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.wait import WebDriverWait

from tests.support.chromium import OFFLINE_HEADLESS_FLAGS
from tests.support.service import REPO, RunningService

ARTEFACTS = REPO / "build" / "docs"
PASSWORD = "correct horse battery"
CHROMIUM_FLAGS = (
    *OFFLINE_HEADLESS_FLAGS,
    "--disable-dev-shm-usage",
    "--window-size=1400,1100",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "run scripts/install-docs-tools.sh (Debian chromium, driver)"
    profile = tempfile.mkdtemp(prefix="us-chromium-")
    options = Options()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager never tries to download one.
    browser = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    try:
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(browser: WebDriver, css: str, timeout: float = 20) -> WebElement:
    element: WebElement = WebDriverWait(browser, timeout).until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, css))
    )
    return element


def _try_it(browser: WebDriver, operation: str, body: str | None = None) -> WebElement:
    """Open an operation, press "Try it out", optionally type a body, execute; the live
    response's row."""
    block = f"#operations-{operation}"
    summary = _wait(browser, f"{block} .opblock-summary")
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'})", summary)
    summary.click()
    _wait(browser, f"{block} .try-out__btn").click()
    if body is not None:
        editor = _wait(browser, f"{block} textarea.body-param__text")
        editor.clear()
        editor.send_keys(body)
    _wait(browser, f"{block} button.execute").click()
    return _wait(browser, f"{block} .live-responses-table .response")


def _status(row: WebElement) -> str:
    text: str = row.find_element(By.CSS_SELECTOR, ".response-col_status").text
    return text.strip()


def test_docs_work_offline_sign_up_authorize_and_read_me(
    service: RunningService, browser: WebDriver
) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    email = f"ada-{uuid.uuid4().hex[:6]}@example.com"
    browser.get(f"{service.base_url}/docs")
    title = _wait(browser, ".swagger-ui .info .title")
    assert "user-service" in title.text

    # Everything the page loaded came from the service itself.
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert loaded, "the page loaded no resources"
    foreign = [url for url in loaded if not url.startswith(service.base_url)]
    assert not foreign, foreign

    created = _try_it(
        browser,
        "users-signUp",
        json.dumps({"email": email, "password": PASSWORD, "full_name": "Ada Lovelace"}),
    )
    assert _status(created) == "201", created.text

    _wait(browser, ".auth-wrapper .btn.authorize").click()
    dialog = _wait(browser, ".auth-container")
    assert "email" in dialog.text.lower()
    for label in ("client_id_password", "client_secret_password", "password_type"):
        hidden = browser.find_elements(By.CSS_SELECTOR, f"label[for='{label}']")
        assert hidden and not any(element.is_displayed() for element in hidden), label
    scopes = browser.find_elements(By.CSS_SELECTOR, ".auth-container .scope-def")
    assert not any(element.is_displayed() for element in scopes), "scope text for no scopes"
    _wait(browser, "#oauth_username").send_keys(email)
    _wait(browser, "#oauth_password").send_keys(PASSWORD)
    browser.save_screenshot(str(ARTEFACTS / "authorize.png"))
    _wait(browser, ".auth-container .btn.modal-btn.authorize").click()
    WebDriverWait(browser, 20).until(
        lambda b: "Logout" in b.find_element(By.CSS_SELECTOR, ".auth-container").text
    )
    _wait(browser, ".auth-container .btn-done").click()

    me = _try_it(browser, "users-readMe")
    assert _status(me) == "200", me.text
    assert email in me.text
    browser.execute_script(
        "arguments[0].scrollIntoView({block: 'center'})",
        browser.find_element(By.CSS_SELECTOR, "#operations-users-readMe .live-responses-table"),
    )
    browser.save_screenshot(str(ARTEFACTS / "swagger-ui.png"))
    assert (ARTEFACTS / "swagger-ui.png").stat().st_size > 10_000

    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors


def test_access_log_names_docs_routes_and_paths(service: RunningService) -> None:
    paths = ("/docs", "/openapi.json", "/docs/assets/swagger-ui.css")
    for number, path in enumerate(paths):
        headers = {"X-Request-ID": f"docs-route-{number}"}
        assert httpx.get(f"{service.base_url}{path}", headers=headers).status_code == 200, path
    # Each request may have gone to either worker: wait for every line.
    for number in range(len(paths)):
        log = service.logs_with(f"docs-route-{number}")
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    requests = {line.get("path"): line for line in lines if line.get("event") == "request"}
    assert requests["/docs"]["route"] == "/docs"
    assert requests["/openapi.json"]["route"] == "/openapi.json"
    assert requests["/docs/assets/swagger-ui.css"]["route"] == "/docs/assets"


def test_docs_page_names_no_outside_url(service: RunningService) -> None:
    html = httpx.get(f"{service.base_url}/docs").text
    assert "cdn." not in html and "https://" not in html, html
