"""The demo page in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`) driven by Selenium
uploads the astronaut photo, waits for the result table and saves a screenshot; the page must show `happiness` and
must not ask anything of another machine. A second test plays the astronaut through Chromium's fake camera into the
Webcam tab. Without Chromium and its driver the module is skipped, saying so.

The README's screenshot comes from this test: `GREFEL_DEMO_SCREENSHOT=docs/demo.png pytest tests/test_demo_browser.py`
also writes it there, reduced to a small palette PNG.
"""

import json
import os
import shutil
import socket
import time

import cv2
import numpy as np
import pytest
from conftest import REPO_ROOT
from PIL import Image

BROWSER = next((path for path in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if path), None)
DRIVER = shutil.which("chromedriver")
if BROWSER is None or DRIVER is None:
    pytest.skip("headless Chromium is not installed (apt-get install chromium chromium-driver); CI installs it",
                allow_module_level=True)

pytest.importorskip("gradio", reason="the demo needs Gradio: pip install 'grefel_hf[demo]'")
pytest.importorskip("selenium", reason="the browser test needs Selenium: pip install selenium")

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import (  # noqa: E402
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from grefel_hf.demo import app as demo_app  # noqa: E402
from grefel_hf.demo.options import DemoOptions  # noqa: E402

pytestmark = pytest.mark.slow

ASTRONAUT = os.path.join(REPO_ROOT, "examples", "astronaut.jpg")
WINDOW = (1280, 1560)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def page_url():
    demo = demo_app.launch_demo(DemoOptions(port=free_port(), stream_interval=0.5), block=False)
    yield demo.local_url
    demo.close()


def _start_browser(profile, *arguments: str):
    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--user-data-dir={profile}",
                     # the page must work with nothing but this machine: every other host name fails to resolve
                     "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1, EXCLUDE localhost", *arguments):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))


@pytest.fixture
def browser(tmp_path):
    driver = _start_browser(tmp_path / "profile")
    yield driver
    driver.quit()


def write_y4m(path, rgb, frames: int = 10):
    """A raw video file (YUV4MPEG2) that Chromium's fake camera plays in a loop."""
    height, width = rgb.shape[:2]
    frame = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).tobytes()
    with open(path, "wb") as handle:
        handle.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            handle.write(b"FRAME\n" + frame)
    return path


def _click(driver, text: str) -> bool:
    """Click the visible button reading `text`; False while there is none (the page redraws itself)."""
    try:
        button = next(b for b in driver.find_elements(By.TAG_NAME, "button")
                      if b.is_displayed() and b.text.strip() == text)
        button.click()
    except (StopIteration, StaleElementReferenceException):
        return False
    return True


def _requested_urls(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _cells(driver) -> list[str]:
    cells = driver.find_elements(By.CSS_SELECTOR, "#photo-table td")
    return [(cell.get_attribute("textContent") or "").strip() for cell in cells]


def _save_for_readme(screenshot, target: str) -> None:
    image = Image.open(screenshot).convert("RGB")
    image.thumbnail((960, 960))
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)


def test_the_page_shows_happiness_for_the_astronaut_and_asks_nothing_of_other_machines(browser, page_url,
                                                                                        tmp_path):
    browser.get(page_url)
    wait = WebDriverWait(browser, 120)
    upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#photo-input input[type=file]"))
    browser.find_element(By.CSS_SELECTOR, "#photo-saliency input[type=checkbox]").click()
    started = time.monotonic()
    upload.send_keys(ASTRONAUT)
    try:
        wait.until(lambda d: "happiness" in _cells(d))
    except TimeoutException:
        browser.save_screenshot(str(tmp_path / "timeout.png"))
        pytest.fail(f"no result table with happiness after 120 s; table cells: {_cells(browser)}; screenshot "
                    f"{tmp_path / 'timeout.png'}")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#photo-output img"))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#photo-overlays img"))
    time.sleep(1.0)  # let the annotated photo and the chart finish drawing
    screenshot = tmp_path / "demo.png"
    assert browser.save_screenshot(str(screenshot))
    if os.environ.get("GREFEL_DEMO_SCREENSHOT"):
        _save_for_readme(screenshot, os.environ["GREFEL_DEMO_SCREENSHOT"])
    status = browser.find_element(By.CSS_SELECTOR, "#photo-status").text
    assert status.startswith("1 face: happiness"), status
    marks = [m.get_attribute("aria-label") or "" for m in browser.find_elements(By.CSS_SELECTOR, "#photo-bar [role]")]
    bars = [mark for mark in marks if mark.startswith("label: ")]  # the chart's bars, one per class
    assert len(bars) >= 7 and any(mark.startswith("label: happiness; probability: 0.9") for mark in bars), marks
    assert time.monotonic() - started < 120
    host = page_url.split("//", 1)[1].rstrip("/")
    hosts = {url.split("//", 1)[1].split("/")[0]: url for url in _requested_urls(browser)
             if url.startswith(("http:", "https:", "ws:", "wss:"))}  # the browser's own chrome:// pages aside
    assert host in hosts, "the browser's network log did not record the page's own requests"
    elsewhere = [url for name, url in hosts.items() if name != host]
    assert elsewhere == [], f"the page requested other machines: {elsewhere}"


def test_the_webcam_stream_labels_the_face_the_camera_sees(page_url, tmp_path, monkeypatch):
    seen = []
    analyse_frame = demo_app.analyse_frame

    def spy(*args, **kwargs):
        picture, entries = analyse_frame(*args, **kwargs)
        seen.append([entry["label"] for entry in entries])
        return picture, entries

    monkeypatch.setattr(demo_app, "analyse_frame", spy)
    camera = write_y4m(tmp_path / "camera.y4m", np.asarray(Image.open(ASTRONAUT).convert("RGB")))
    driver = _start_browser(tmp_path / "profile", "--use-fake-device-for-media-stream",
                            "--use-fake-ui-for-media-stream", f"--use-file-for-fake-video-capture={camera}")
    try:
        driver.get(page_url)
        wait = WebDriverWait(driver, 60)
        for text in ("Webcam", "Click to Access Webcam", "Record"):
            wait.until(lambda d, text=text: _click(d, text))
        wait.until(lambda d: len(seen) >= 2)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#webcam-output img"))
    finally:
        driver.quit()
    assert all(labels == ["happiness"] for labels in seen), seen
