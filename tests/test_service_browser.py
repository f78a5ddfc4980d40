"""The web page of faceprior serve in a real browser (headless Chromium driven by Selenium):
upload a photo, wait for the result, move the strength control, download, and compare the
download with the CLI's output for the same options. Saves a screenshot of the page (to
$FACEPRIOR_SCREENSHOT as well when set). The photo is one of ../shared/data, or
$FACEPRIOR_BROWSER_PHOTO: docs/images/service.png was made with the bundled example, since the
shared photos may not be copied into the repository:

    FACEPRIOR_BROWSER_PHOTO=examples/astronaut-old-print.jpg FACEPRIOR_SCREENSHOT=docs/images/service.png \
        .venv/bin/python -m pytest tests/test_service_browser.py
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("selenium")

import uvicorn  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from faceprior.cli import main as cli_main  # noqa: E402
from faceprior.service.app import ServiceSettings, create_app  # noqa: E402

PHOTO = Path(os.environ.get("FACEPRIOR_BROWSER_PHOTO") or
             Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "realworld-whole" / "gfpgan" / "00.jpg"
             ).resolve()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="needs Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)"),
    pytest.mark.skipif(not PHOTO.is_file(), reason=f"needs the shared photo {PHOTO} (../shared/data)"),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    port = free_port()
    config = uvicorn.Config(create_app(ServiceSettings(work_dir=tmp_path)), host="127.0.0.1", port=port,
                            log_level="warning")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not running.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    running.should_exit = True
    thread.join(timeout=30)


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900"):
        options.add_argument(argument)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    yield driver
    driver.quit()


def photo_state(driver) -> str:
    # read in the page: the list is redrawn on every change, so a held element can go stale
    return driver.execute_script("const tag = document.querySelector('#photos span'); return tag ? tag.textContent : ''")


def test_the_page_restores_compares_and_downloads_what_the_cli_writes(server, browser, tmp_path):
    wait = WebDriverWait(browser, 180, poll_frequency=0.2)
    browser.get(server)
    wait.until(lambda d: d.find_element(By.ID, "status").text == "ready")
    upload = browser.find_element(By.ID, "file-input")
    browser.execute_script("arguments[0].hidden = false", upload)
    upload.send_keys(str(PHOTO))
    wait.until(lambda d: photo_state(d) == "done")
    first_faces = browser.find_elements(By.CSS_SELECTOR, "#boxes .box")
    assert first_faces and "w " in first_faces[0].text  # the chosen weight is shown on each face

    # Strength: from auto to a fixed 0.70, with the keyboard on the range control.
    browser.find_element(By.ID, "weight-auto").click()
    weight = browser.find_element(By.ID, "weight")
    weight.send_keys(Keys.ARROW_RIGHT * 4)
    assert weight.get_attribute("value") == "0.7"
    wait.until(lambda d: '"weight":"0.7"' in (d.find_element(By.ID, "after").get_attribute("data-options") or ""))
    assert photo_state(browser) == "done"
    assert browser.find_element(By.ID, "message").text == ""

    # The before/after slider moves the split.
    split = browser.find_element(By.ID, "split")
    split.send_keys(Keys.HOME)
    assert "inset(0px 0px 0px 0%)" in browser.find_element(By.ID, "after-clip").get_attribute("style") or \
        "inset(0 0 0 0%)" in browser.find_element(By.ID, "after-clip").get_attribute("style")
    split.send_keys(Keys.ARROW_RIGHT * 30)

    browser.find_element(By.ID, "download").click()
    target = browser.downloads / f"{PHOTO.stem}_restored{PHOTO.suffix}"
    deadline = time.monotonic() + 30
    while not target.is_file() or any(browser.downloads.glob("*.crdownload")):
        assert time.monotonic() < deadline, f"no download: {list(browser.downloads.iterdir())}"
        time.sleep(0.1)

    browser.execute_script("window.scrollTo(0, 0)")
    screenshot = tmp_path / "service-page.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("FACEPRIOR_SCREENSHOT"):
        shutil.copyfile(screenshot, os.environ["FACEPRIOR_SCREENSHOT"])

    assert cli_main(["restore", str(PHOTO), "-o", str(tmp_path / "cli"), "--weight", "0.7"]) == 0
    assert target.read_bytes() == (tmp_path / "cli" / PHOTO.name).read_bytes()
