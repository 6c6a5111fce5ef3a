"""The viewer and lessons pages in a real browser (Debian's chromium, driven by Selenium through
chromium-driver), served by the lab's own app on uvicorn: curves of a finished run drawn with the
members' labels, a study's scatter and importance, a lesson's checks filling in, no console errors."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
webdriver = pytest.importorskip("selenium.webdriver")

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="chromium and chromium-driver are not installed")]


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory):
    import uvicorn

    from trainlab.cli import main
    from trainlab.lab import create_app

    root = tmp_path_factory.mktemp("lab")
    assert main(["train", str(REPO / "examples/mlp.toml"), "--out", str(root / "mlp"), "--quiet",
                 "--set", "train.epochs=3", "--set", "model.hidden=[16]", "--set", "population.size=2",
                 "--set", "optim.lr=[0.05, 0.1]", "--set", "data.train=500"]) == 0
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(create_app(root), log_level="warning"))
    th = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    th.start()
    while not srv.started:
        time.sleep(0.05)
    yield root, f"http://127.0.0.1:{sock.getsockname()[1]}"
    srv.should_exit = True
    th.join(timeout=15)
    sock.close()


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(a)
    opts.binary_location = CHROMIUM
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield d
    d.quit()


def wait_for(fn, timeout: float = 90.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def console_errors(d) -> list[str]:
    return [e["message"] for e in d.get_log("browser") if e["level"] == "SEVERE"]


def test_viewer_page_draws_a_run_with_member_labels(lab_server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    _, url = lab_server
    d = browser
    d.get(f"{url}/runs#run=mlp")
    wait_for(lambda: d.find_element(By.ID, "rv-status").text == "finished", what="the run's status")
    wait_for(lambda: len(d.find_elements(By.CSS_SELECTOR, "#rv-charts canvas")) >= 5, what="the curves")
    members = [td.text for td in d.find_elements(By.CSS_SELECTOR, "#rv-members tbody td:nth-child(2)")]
    assert members == ["lr=0.05", "lr=0.1"]
    assert d.find_element(By.ID, "rv-epoch").text == "3"
    rows = wait_for(lambda: d.find_elements(By.CSS_SELECTOR, "#run-table tbody tr"), what="the run list")
    assert rows[0].get_attribute("data-path") == "mlp"
    wait_for(lambda: d.find_elements(By.CSS_SELECTOR, "#rv-figures img"), what="curves.png")
    d.save_screenshot(str(tmp_path / "viewer.png"))
    assert console_errors(d) == []


def test_lessons_page_fills_in_the_checks(lab_server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    root, url = lab_server
    d = browser
    d.get(f"{url}/lessons")
    wait_for(lambda: d.find_elements(By.CSS_SELECTOR, "#lesson-list li[data-name='zero-init'] .title"),
             what="the lesson list")[0].click()
    assert "symmetry" in d.find_element(By.ID, "lesson-claim").text
    assert d.find_element(By.ID, "lesson-docs").get_attribute("href").endswith("/api/docs?page=init")
    Select(d.find_element(By.ID, "preset")).select_by_value("smoke")
    d.find_element(By.ID, "start").click()
    wait_for(lambda: d.find_element(By.ID, "live-status").text == "running", what="the worker to start")
    checks = wait_for(lambda: d.find_elements(By.CSS_SELECTOR, "#checks .check"), what="the first check")
    assert checks
    wait_for(lambda: d.find_element(By.ID, "live-status").text == "done", what="the lesson to end")
    wait_for(lambda: d.find_elements(By.CSS_SELECTOR, "#figures img"), what="the figures")
    verdicts = [c.find_element(By.CSS_SELECTOR, ".verdict").text for c in d.find_elements(By.CSS_SELECTOR, "#checks .check")]
    assert len(verdicts) >= 2 and set(verdicts) <= {"held", "did not hold"}
    assert "The claim" in d.find_element(By.ID, "live-verdict").text
    d.save_screenshot(str(tmp_path / "lesson.png"))
    # a reload replays the lesson from its files
    d.refresh()
    wait_for(lambda: d.find_element(By.ID, "live-status").text == "done", what="the replayed lesson")
    assert len(d.find_elements(By.CSS_SELECTOR, "#checks .check")) == len(verdicts)
    assert console_errors(d) == []
    assert [p.name for p in (root / "lessons" / "zero-init").iterdir()]  # under the root's lessons/
