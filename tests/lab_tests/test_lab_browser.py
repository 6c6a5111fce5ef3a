"""The lab in a real browser: Debian's chromium driven by Selenium through Debian's chromium-driver.

The issue's steps: (1) open the lab; (2) compose a 3-member comparison of init scales in the form; (3) start
it, and see the curves and histograms grow and the members labelled by init scale; a reload mid-run loses
nothing; (4) pause, change one member's learning rate, resume, stop; (5) open the run with `trainlab
evaluate`; (6) open a lesson and see its checks fill in; (7) no console errors, and a screenshot
(test-artifacts/lab.png; with TRAINLAB_UPDATE_SCREENSHOTS=1, docs/images/lab.png, shown in docs/lab.md). Skipped without chromium/chromedriver, unless
TRAINLAB_REQUIRE_BROWSER=1 (CI), where that fails.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import re
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("starlette")
REPO = Path(__file__).resolve().parents[2]
# the screenshot: test-artifacts/lab.png; with TRAINLAB_UPDATE_SCREENSHOTS=1 the one docs/lab.md shows
SHOT = (REPO / "docs" / "images" / "lab.png" if os.environ.get("TRAINLAB_UPDATE_SCREENSHOTS") == "1"
        else REPO / "test-artifacts" / "lab.png")


def _require_browser() -> tuple[str, str]:
    from trainlab.lab.testing import browser_paths

    paths = browser_paths()
    if paths is None:
        msg = "chromium, chromium-driver (apt) and selenium (pip) are needed for the lab's browser test"
        if os.environ.get("TRAINLAB_REQUIRE_BROWSER") == "1":
            pytest.fail(msg + " and TRAINLAB_REQUIRE_BROWSER=1")
        pytest.skip(msg)
    return paths


@pytest.fixture()
def server(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "trainlab.cli", "lab", "--root", str(tmp_path / "lab"),
                             "--port", "0", "--threads", "1", "--probe-every", "10"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, text=True)
    line = proc.stderr.readline()
    m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
    assert m, line
    yield m.group(1), tmp_path / "lab"
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.mark.slow
def test_lab_in_a_real_browser(server):
    chromium, driver_path = _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    url, root = server
    opts = Options()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1500",
                 "--disable-background-networking", "--no-first-run"):
        opts.add_argument(flag)
    opts.binary_location = chromium
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(driver_path), options=opts)
    wait = WebDriverWait(d, 90, poll_frequency=0.2)
    counts = lambda: d.execute_script("return window.TL.counts()")  # noqa: E731
    try:
        # 1. open the lab: the form is generated from the schema
        d.get(url)
        wait.until(lambda _: d.find_elements(By.ID, "f-optim.lr"))
        # 2. compose: small data, and a comparison of three init scales
        for key, value in (("data.train", "600"), ("data.val", "200"), ("data.test", "200"), ("model.hidden", "[32, 32]"),
                           ("train.steps", "4000"), ("train.eval_every", "10")):
            d.find_element(By.ID, f"f-{key}").send_keys(value)
        lr = d.find_element(By.ID, "f-optim.lr")
        lr.send_keys("-1")  # validated as typed, with the CLI's message ...
        wait.until(lambda _: "optim.lr must be > 0" in lr.find_element(By.XPATH, "..").text)
        lr.clear()  # ... and fixed
        lr.send_keys("0.05")
        wait.until(lambda _: "optim.lr must be" not in lr.find_element(By.XPATH, "..").text)
        Select(d.find_element(By.ID, "compare-key-0")).select_by_value("model.init_scale")
        d.find_element(By.ID, "compare-values-0").send_keys("1, 0.1, 0.01")
        wait.until(lambda _: "3 member(s)" in d.find_element(By.ID, "preview").text)
        assert d.find_element(By.ID, "preview").text.count("init_scale=") == 3
        # 3. start: curves and histograms grow; members are labelled by their init scale
        d.find_element(By.ID, "run-name").send_keys("browser")
        wait.until(lambda _: d.find_element(By.ID, "start").is_enabled())
        d.find_element(By.ID, "start").click()
        wait.until(lambda _: (c := counts()) and c["status"] == "running" and c["probes"] >= 2 and c["valAcc"] >= 3)
        first = counts()
        assert first["labels"] == ["init_scale=1", "init_scale=0.1", "init_scale=0.01"]
        labels = [e.text for e in d.find_elements(By.CSS_SELECTOR, "#members td.label")]
        assert labels == first["labels"]
        wait.until(lambda _: (c := counts())["batch"] > first["batch"] and c["valLoss"] > first["valLoss"]
                   and c["probes"] > first["probes"])
        assert counts()["act"] > 0 and counts()["weight"] > 0  # histograms drawn, one per member
        # a reload mid-run loses nothing: the page reconnects to the run and gets every event again
        before = counts()
        d.refresh()
        wait.until(lambda _: d.execute_script("return !!window.TL && !!window.TL.counts()")
                   and (c := counts())["batch"] >= before["batch"] and c["probes"] >= before["probes"]
                   and c["valAcc"] >= before["valAcc"])
        # the time slider replays an earlier probe step
        slider = d.find_element(By.CSS_SELECTOR, "#probe-slider input[type=range]")
        d.execute_script("arguments[0].value = 0; arguments[0].dispatchEvent(new Event('input'))", slider)
        assert "step 0" in d.find_element(By.CSS_SELECTOR, "#probe-slider output").text
        d.execute_script("arguments[0].value = arguments[0].max; arguments[0].dispatchEvent(new Event('input'))", slider)
        # 4. pause, change member 1's learning rate, resume, stop
        d.find_element(By.ID, "btn-pause").click()
        wait.until(lambda _: counts()["status"] == "paused")
        row = d.find_element(By.CSS_SELECTOR, "#members tr[data-member='1']")
        row.find_element(By.CSS_SELECTOR, "input.steer-value").send_keys("0.2")
        row.find_element(By.CSS_SELECTOR, "button.steer-set").click()
        wait.until(lambda _: "init_scale=0.1 optim.lr 0.05 -> 0.2" in d.find_element(By.ID, "steer-log").text)
        d.find_element(By.ID, "btn-resume").click()
        wait.until(lambda _: counts()["status"] == "running")
        d.find_element(By.ID, "btn-stop").click()
        wait.until(lambda _: counts()["status"] == "finished")
        d.execute_script("document.querySelector('#probe-layer').value = '2'; "
                         "document.querySelector('#probe-layer').dispatchEvent(new Event('change'))")
        time.sleep(0.5)
        SHOT.parent.mkdir(parents=True, exist_ok=True)
        d.save_screenshot(str(SHOT))
        # 5. the run is an ordinary run directory: `trainlab evaluate` opens it
        run = root / "browser"
        ev = subprocess.run([sys.executable, "-m", "trainlab.cli", "evaluate", str(run), "--split", "val"],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
        assert ev.returncode == 0, ev.stderr
        assert "init_scale=0.1" in ev.stdout
        steering = json.loads((run / "history.json").read_text())["info"]["steering"]
        assert [(s["member"], s["key"]) for s in steering] == [(1, "optim.lr")]
        # 6. a lesson: its checks fill in as they are measured
        d.get(url.rstrip("/") + "/lessons")
        wait.until(lambda _: d.find_elements(By.CSS_SELECTOR, "#lesson-list li[data-name='zero-init']"))
        d.find_element(By.CSS_SELECTOR, "#lesson-list li[data-name='zero-init']").click()
        wait.until(lambda _: d.find_element(By.ID, "start").is_displayed())
        presets = [o.get_attribute("value") for o in d.find_elements(By.CSS_SELECTOR, "#preset option")]
        if "smoke" in presets:
            Select(d.find_element(By.ID, "preset")).select_by_value("smoke")
        d.find_element(By.ID, "start").click()
        WebDriverWait(d, 180, poll_frequency=0.3).until(
            lambda _: len(d.find_elements(By.CSS_SELECTOR, "#checks .check")) >= 2)
        # 7. no console errors anywhere on the way. Chromium also logs every 4xx response as SEVERE: the live
        # preview's POST /api/compose answers 400 (with the one-line message the page shows) when it fires while
        # the form holds the invalid rate typed in step 2 -- it does when the machine is slow enough that its
        # 250 ms debounce ends before the correction is typed. That answer is the API working, not an error.
        expected = "/api/compose - Failed to load resource: the server responded with a status of 400"
        errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE"
                  and not (e.get("source") == "network" and expected in e["message"])]
        assert not errors, errors
    finally:
        d.quit()
