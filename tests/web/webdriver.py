"""A small W3C WebDriver client over HTTP (urllib), enough to drive Chromium through chromedriver.

Written for these tests so the suite needs no browser-automation package: chromedriver speaks the
W3C WebDriver protocol (JSON over HTTP), and a dozen endpoints cover log in, type, click and read.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
KEYS = {"tab": "\ue004", "enter": "\ue007", "right": "\ue014", "left": "\ue012", "end": "\ue010"}
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,1000")


def find_chromium() -> tuple[str, str] | None:
    """Debian's chromium and chromium-driver, or None."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


class WebDriverError(AssertionError):
    pass


class Browser:
    def __init__(self, browser: str, driver: str, profile: Path):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.driver = subprocess.Popen([driver, f"--port={port}"], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{port}"
        self._wait_for_driver()
        caps = {"browserName": "chrome", "goog:chromeOptions": {
            "binary": browser, "args": [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]}}
        answer = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})
        self.session = answer["sessionId"]
        self.version = answer["capabilities"].get("browserVersion", "?")

    def _wait_for_driver(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.base}/status", timeout=2).read()
                return
            except OSError:
                time.sleep(0.1)
        raise WebDriverError("chromedriver did not start")

    def _call(self, method: str, path: str, body: dict | None = None) -> Any:
        data = json.dumps(body if body is not None else {}).encode() if method == "POST" else None
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.load(response)["value"]
        except urllib.error.HTTPError as exc:
            raise WebDriverError(f"{method} {path}: {exc.read().decode(errors='replace')[:500]}") from None

    def _s(self, path: str) -> str:
        return f"/session/{self.session}{path}"

    def go(self, url: str) -> None:
        self._call("POST", self._s("/url"), {"url": url})

    @property
    def url(self) -> str:
        return self._call("GET", self._s("/url"))

    def find(self, css: str, timeout: float = 10.0) -> str:
        """An element id; waits for it to appear (pages are server-rendered, so this is short)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self._call("POST", self._s("/elements"), {"using": "css selector", "value": css})
            if found:
                return found[0][ELEMENT]
            if time.monotonic() > deadline:
                raise WebDriverError(f"no element matches {css!r} on {self.url}")
            time.sleep(0.1)

    def wait_for_url(self, fragment: str, timeout: float = 10.0) -> str:
        """Wait until the page's URL contains ``fragment``: a click that submits a form returns before
        the next page has loaded, and the old page may hold the elements a test looks for next."""
        deadline = time.monotonic() + timeout
        while fragment not in (url := self.url):
            if time.monotonic() > deadline:
                raise WebDriverError(f"the page stayed at {url}, expected a URL with {fragment!r}")
            time.sleep(0.05)
        return url

    def count(self, css: str) -> int:
        return len(self._call("POST", self._s("/elements"), {"using": "css selector", "value": css}))

    def type(self, css: str, text: str) -> None:
        self._call("POST", self._s(f"/element/{self.find(css)}/value"), {"text": text})

    def click(self, css: str) -> None:
        self._call("POST", self._s(f"/element/{self.find(css)}/click"))

    def text(self, css: str) -> str:
        return self._call("GET", self._s(f"/element/{self.find(css)}/text"))

    def attribute(self, css: str, name: str) -> str | None:
        return self._call("GET", self._s(f"/element/{self.find(css)}/attribute/{name}"))

    def displayed(self, css: str) -> bool:
        return self._call("GET", self._s(f"/element/{self.find(css)}/displayed"))

    def keys(self, text: str) -> None:
        """Keys to whatever has the focus (``KEYS`` names the special ones), as a user types them."""
        actions = [a for k in text for a in ({"type": "keyDown", "value": k}, {"type": "keyUp", "value": k})]
        self._call("POST", self._s("/actions"), {"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})

    def focused_id(self) -> str | None:
        return self._call("POST", self._s("/execute/sync"), {"script": "return document.activeElement.id", "args": []})

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self._call("GET", self._s("/screenshot"))))
        return path

    def close(self) -> None:
        try:
            self._call("DELETE", self._s(""))
        finally:
            self.driver.terminate()
            try:
                self.driver.wait(10)
            except subprocess.TimeoutExpired:
                self.driver.kill()
