"""The drawing demo in a real browser: Debian's chromium, driven by playwright, draws a 7 with the mouse.

Runs where chromium and the `demo` extra are installed (`.ci/run` installs both), with the shipped
reference model: the demo works on a fresh clone, before any training.
"""

import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

from mnist_adder import PROJECT_ROOT
from tests.conftest import SHIPPED_MODEL, free_port

CHROMIUM = shutil.which("chromium")


@pytest.fixture
def demo_url(tmp_path):
    pytest.importorskip("gradio", reason="needs the demo extra")
    port = free_port()
    log = open(tmp_path / "demo.log", "w")  # noqa: SIM115  closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "mnist_adder.demo", "--checkpoint", SHIPPED_MODEL,
         "--port", str(port)],
        cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        assert server.poll() is None, (tmp_path / "demo.log").read_text()
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            assert time.monotonic() < deadline, "the demo did not answer within 120 s"
            time.sleep(0.5)
    yield url
    server.terminate()
    server.wait(timeout=30)
    log.close()


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_a_seven_drawn_with_the_mouse_plus_three_is_ten(demo_url, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="needs the demo extra")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        page.goto(demo_url)
        page.get_by_role("button", name="Brush").click()
        box = page.locator("#drawing canvas").first.bounding_box()

        def at(x: float, y: float) -> tuple[float, float]:  # a point of the canvas, in fractions
            return box["x"] + x * box["width"], box["y"] + y * box["height"]

        page.mouse.move(*at(0.3, 0.25))  # a 7: the bar, then the stroke down to the left
        page.mouse.down()
        page.mouse.move(*at(0.7, 0.25), steps=10)
        page.mouse.move(*at(0.45, 0.8), steps=15)
        page.mouse.up()
        number = page.locator("#number input[type=number]")
        number.fill("3")
        number.press("Enter")
        answer = page.locator("#answer textarea")
        page.wait_for_function(
            "() => document.querySelector('#answer textarea').value.endsWith('+ 3 = 10')", timeout=60_000
        )
        page.screenshot(path=tmp_path / "demo.png")
        assert answer.input_value() == "digit 7, 7 + 3 = 10"
        assert "7" in page.locator("#digit").inner_text() and "10" in page.locator("#sum").inner_text()
        browser.close()
