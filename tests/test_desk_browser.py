"""The review desk in a real headless browser (issue 19): Debian's chromium through Selenium.

The real server (``claims desk`` in its own process) on a copy of the desk's test warehouse;
two operators sign in, filter the queue, give both approvals of a four-eyes item, reject one,
approve the rest, read the log; the next run pays exactly what the same decisions made on the
command line pay. ``CLAIMS_DESK_SCREENSHOTS=DIR`` keeps 1280-px screenshots of the queue and an
item there (docs/ holds the committed ones).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_desk import PASSWORD, build_desk_world, copy_world, start_desk
from test_matching import outcomes, query
from test_review import H, night
from test_review import cli as claims_cli

from config.settings import Settings

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip(
        "Debian's chromium and chromium-driver are not installed "
        "(apt-get install -y chromium chromium-driver; .ci/run does it)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (a dev dependency)")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@pytest.fixture
def browser() -> Iterator[Any]:
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not try to download anything
    profile = tempfile.mkdtemp(prefix="claims-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(flag)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=opts, service=service)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def built(tmp_path: Path) -> Settings:
    return build_desk_world(tmp_path / "built")


@pytest.fixture
def desk_server(built: Settings, tmp_path: Path) -> Iterator[tuple[Settings, str]]:
    settings = copy_world(built, tmp_path / "desk")
    proc, url = start_desk(settings, tmp_path / "desk.log")
    try:
        yield settings, url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def click(driver: Any, by: str, what: str) -> None:
    """Click something that submits a form, and wait for the next page.

    Chromedriver now and then answers a click with "Node … does not belong to the document"
    while the page settles; the click is tried again on the same page then (never twice once
    the page has gone).
    """
    page = driver.find_element(By.TAG_NAME, "html")

    def gone(_: Any) -> bool:
        try:
            page.is_enabled()
        except WebDriverException:  # stale, or no longer in the document: the next page
            return True
        return False

    for attempt in range(3):
        try:
            driver.find_element(by, what).click()
            break
        except WebDriverException:
            if attempt == 2 or gone(driver):
                raise
            time.sleep(0.3)
    WebDriverWait(driver, 30).until(gone)


def sign_in(driver: Any, url: str, name: str) -> None:
    driver.get(f"{url}/queue")
    assert driver.current_url.endswith("/signin"), "the queue needs a signed-in operator"
    driver.find_element(By.ID, "operator").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    click(driver, By.ID, "signin")
    assert driver.find_element(By.ID, "signed-in").text == name


def sign_out(driver: Any) -> None:
    click(driver, By.XPATH, "//button[text()='Sign out']")
    assert driver.current_url.endswith("/signin")


def queue_rows(driver: Any) -> list[str]:
    return [
        str(r.get_attribute("data-stay"))
        for r in driver.find_elements(By.CSS_SELECTOR, "#queue tr[data-stay]")
    ]


def decide(driver: Any, url: str, stay: str, button: str, note: str, choice: str = "") -> str:
    driver.get(f"{url}/item/{stay}")
    if choice:
        driver.find_element(By.CSS_SELECTOR, f"input[name=enrollment][value={choice}]").click()
    driver.find_element(By.ID, f"{button}-note").send_keys(note)
    click(driver, By.ID, button)
    return str(driver.find_element(By.ID, "notice").text)


def screenshot(driver: Any, name: str) -> None:
    """The whole page at 1280 CSS pixels wide."""
    where = os.environ.get("CLAIMS_DESK_SCREENSHOTS")
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    metrics = {"width": 1280, "height": height, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    path = Path(where or tempfile.gettempdir()) / name
    assert driver.save_screenshot(str(path))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_two_operators_decide_in_a_browser_and_the_run_pays_like_the_command_line(
    browser: Any, desk_server: tuple[Settings, str], built: Settings, tmp_path: Path
) -> None:
    settings, url = desk_server
    big, ovb = f"{H[0]}/BIG1", f"{H[1]}/OVB"

    sign_in(browser, url, "liu")
    assert sorted(queue_rows(browser)) == sorted([f"{H[0]}/NAME1", f"{H[0]}/AMB1", ovb, big])
    assert "overlap: 2" in browser.find_element(By.ID, "counts").text
    screenshot(browser, "desk-queue.png")
    Select(browser.find_element(By.ID, "reason")).select_by_value("overlap")
    click(browser, By.ID, "filter")
    assert sorted(queue_rows(browser)) == sorted([ovb, big])
    browser.find_element(By.ID, "min_amount").send_keys("20000.01")
    click(browser, By.ID, "filter")
    assert queue_rows(browser) == [big]

    browser.get(f"{url}/item/{H[0]}/NAME1")
    screenshot(browser, "desk-item.png")

    # The first approval of a four-eyes item: it waits, showing who approved first
    notice = decide(browser, url, big, "approve", "both hospitals confirmed the stays")
    assert "waits for a second, different operator" in notice
    assert big in queue_rows(browser)
    browser.get(f"{url}/item/{big}")
    assert "liu" in browser.find_element(By.ID, "waits").text
    screenshot(browser, "desk-item-four-eyes.png")
    sign_out(browser)

    # The second operator completes it: it leaves the queue
    sign_in(browser, url, "ma")
    notice = decide(browser, url, big, "approve", "agreed after reading both bills")
    assert "next run pays" in notice
    assert big not in queue_rows(browser)
    notice = decide(browser, url, ovb, "reject", "duplicate bill, confirmed by phone")
    assert "recovers" in notice and ovb not in queue_rows(browser)
    decide(browser, url, f"{H[0]}/NAME1", "approve", "typo in the hospital's record")
    decide(browser, url, f"{H[0]}/AMB1", "approve", "birth certificate", choice="E104")
    assert queue_rows(browser) == []

    # The log, filtered
    browser.get(f"{url}/log")
    Select(browser.find_element(By.ID, "log-decision")).select_by_value("reject")
    click(browser, By.ID, "log-filter")
    rows = browser.find_elements(By.CSS_SELECTOR, "#log tr[data-stay]")
    assert [r.get_attribute("data-stay") for r in rows] == [ovb]
    assert "duplicate bill, confirmed by phone" in rows[0].text and "ma" in rows[0].text

    # The same decisions on the command line, on a copy of the same warehouse
    on_cli = copy_world(built, tmp_path / "cli")
    for args in (
        ["approve", "--stay", big, "--by", "liu", "--note", "checked"],
        ["approve", "--stay", big, "--by", "ma", "--note", "agreed"],
        ["reject", "--stay", ovb, "--by", "ma", "--note", "duplicate"],
        ["approve", "--stay", f"{H[0]}/NAME1", "--by", "ma", "--note", "typo"],
        ["approve", "--stay", f"{H[0]}/AMB1", "--enrollment", "E104", "--by", "ma", "--note", "c"],
    ):
        assert claims_cli(on_cli, "review", *args).exit_code == 0
    night(settings)  # the desk holds no connection between requests: the run proceeds
    night(on_cli)
    ledger = "SELECT hospital_code, settlement_id, plan_code, sum(amount_fen) FROM ledger_entries "
    ledger += "GROUP BY ALL ORDER BY ALL"
    assert query(settings, ledger) == query(on_cli, ledger)
    assert outcomes(settings) == outcomes(on_cli)
    assert outcomes(settings)["BIG1"]["status"] == "paid"
    assert outcomes(settings)["OVB"]["status"] == "rejected"
