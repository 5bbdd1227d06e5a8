"""The report in a real browser (headless Chromium): it renders, makes no network request, logs no
error, and never needs a horizontal scroll bar, on a laptop, a narrow window or a printed A4 page.

The browser is driven through the DevTools protocol over ``--remote-debugging-pipe`` (JSON messages
separated by NUL bytes on file descriptors 3 and 4), so no port, websocket library or driver is needed.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import queue
import subprocess
import threading
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest

from ml.card import load_card
from ml.data.generate import generate_snapshots
from ml.errors import HealthScoreWarning
from ml.pipeline import train
from ml.report.report import SECTIONS, write_report
from ml.serving.bundle import load_model

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
A4_CSS_PX = 703  # 210 mm - 2 x 12 mm page margins, at 96 px per inch

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module", autouse=True)
def _needs_chromium():
    if not CHROMIUM.exists():
        pytest.skip(f"headless Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def report_path(tmp_path_factory) -> Path:
    card = load_card(REPO / "configs" / "default.yaml")
    frame = generate_snapshots(1200, 8, seed=3).frame
    tmp = tmp_path_factory.mktemp("browser")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HealthScoreWarning)
        train(card, frame, tmp / "model", n_refits=2, plots=False, mlflow_files=False)
    model = load_model(tmp / "model")
    # a hostile id in the list: escaped, it must not run (a script would also break the CSP)
    # (the report lists the current book, latest snapshots on the latest date, by value at risk: pick
    # the first of that list)
    dates = pd.to_datetime(frame["snapshot_date"])
    latest = frame[dates.eq(dates.groupby(frame["customer_id"]).transform("max")) & dates.eq(dates.max())]
    riskiest = model.predict(latest, drivers=0).sort_values("value_at_risk")["customer_id"].iloc[-1]
    ids = frame["customer_id"].astype(object)
    frame["customer_id"] = ids.where(ids != riskiest, "<script>alert(1)</script>")
    write_report(model, frame, tmp / "report.html")
    return tmp / "report.html"


class DevTools:
    """A headless Chromium driven over the DevTools pipe: ``send`` a command, read ``events``."""

    def __init__(self, profile: Path, timeout: float = 30.0):
        self.timeout = timeout
        to_browser_r, self._w = os.pipe()
        self._r, from_browser_w = os.pipe()
        # the child must see them as fds 3 (commands in) and 4 (replies out): copy them above 10 first
        # so that the two dup2 calls cannot overwrite each other
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_browser_r, from_browser_w)]
        for fd in (to_browser_r, from_browser_w):
            os.close(fd)

        def wire():
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.stderr = open(profile / "chromium.log", "wb")  # closed in close()
        self.proc = subprocess.Popen(
            [str(CHROMIUM), *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
            preexec_fn=wire,
            close_fds=False,
        )
        for fd in high:
            os.close(fd)
        self.events: list[dict] = []
        self._id = 0
        self._q: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buf = b""
        while chunk := os.read(self._r, 1 << 16):
            buf += chunk
            *messages, buf = buf.split(b"\0")
            for m in messages:
                self._q.put(json.loads(m))
        self._q.put(None)

    def _next(self, deadline: float) -> dict:
        m = self._q.get(timeout=max(deadline - time.monotonic(), 0.01))
        if m is None:
            raise RuntimeError(f"chromium exited (code {self.proc.poll()}); see {self.stderr.name}")
        if "method" in m:
            self.events.append(m)
        return m

    def send(self, method: str, session: str | None = None, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params} | ({"sessionId": session} if session else {})
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            m = self._next(deadline)
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m["result"]

    def wait_event(self, method: str, since: int) -> dict:
        deadline = time.monotonic() + self.timeout
        seen = since
        while True:
            for e in self.events[seen:]:
                if e["method"] == method:
                    return e
            seen = len(self.events)
            self._next(deadline)

    def settle(self, seconds: float = 0.5) -> None:
        """Collect events for a moment (late requests, console messages)."""
        deadline = time.monotonic() + seconds
        with contextlib.suppress(queue.Empty):
            while time.monotonic() < deadline:
                self._next(deadline)

    def open(self, url: str, width: int = 1280, height: int = 900) -> tuple[str, list[dict]]:
        """A new tab showing ``url``; returns its session and the events of the load."""
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        s = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            self.send(f"{domain}.enable", s)
        self.resize(s, width, height)
        mark = len(self.events)
        self.send("Page.navigate", s, url=url)
        self.wait_event("Page.loadEventFired", since=mark)
        self.settle()
        return s, [e for e in self.events[mark:] if e.get("sessionId") == s]

    def resize(self, session: str, width: int, height: int = 900) -> None:
        self.send(
            "Emulation.setDeviceMetricsOverride", session, width=width, height=height, deviceScaleFactor=1, mobile=False
        )

    def evaluate(self, session: str, expression: str):
        r = self.send("Runtime.evaluate", session, expression=expression, returnByValue=True)
        return r["result"].get("value")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close")
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self._w)
        self.stderr.close()


def problems(events: list[dict], page_url: str) -> list[str]:
    """Network requests other than the page itself, console errors, exceptions, failed loads."""
    out = []
    for e in events:
        m, p = e["method"], e["params"]
        if m == "Network.requestWillBeSent" and p["request"]["url"] != page_url:
            out.append(f"request: {p['request']['url']}")
        elif m == "Network.loadingFailed":
            out.append(f"failed load: {p.get('errorText')}")
        elif m == "Runtime.exceptionThrown":
            out.append(f"exception: {p['exceptionDetails'].get('text')}")
        elif m == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert", "warning"):
            out.append(f"console.{p['type']}: {p.get('args')}")
        elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
            out.append(f"log {p['entry']['level']}: {p['entry'].get('text')}")
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    devtools = DevTools(tmp_path_factory.mktemp("chromium-profile"))
    yield devtools
    devtools.close()


OVERFLOW = """(() => {
  const w = document.documentElement.clientWidth;
  const wide = [...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > w + 1)
    .slice(0, 5).map(e => e.tagName + (e.className ? '.' + e.className : ''));
  return {scroll: document.documentElement.scrollWidth, width: w, wide: wide};
})()"""


def test_screenshot_of_the_report(report_path, tmp_path):
    shot = tmp_path / "shot.png"
    run = subprocess.run(
        [
            str(CHROMIUM),
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1280,2000",
            report_path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000
    assert not [line for line in run.stderr.splitlines() if "Uncaught" in line or "net::ERR_" in line]


def test_no_network_request_and_no_console_error(browser, report_path):
    url = report_path.as_uri()
    session, events = browser.open(url)
    assert any(e["method"] == "Network.requestWillBeSent" for e in events)  # the page itself was seen
    assert problems(events, url) == []
    page = browser.evaluate(
        session,
        "({title: document.title, h2: [...document.querySelectorAll('h2')].map(h => h.textContent),"
        " svgs: document.querySelectorAll('svg').length,"
        " scripts: document.scripts.length, ids: [...document.querySelectorAll('td.id')].map(t => t.firstChild.textContent.trim())})",
    )
    assert page["h2"] == [title for _, title in SECTIONS]
    assert page["svgs"] >= 5
    assert page["scripts"] == 0
    assert "<script>alert(1)</script>" in page["ids"]  # shown as text, not run


@pytest.mark.parametrize(
    ("width", "media"), [(1280, "screen"), (1024, "screen"), (700, "screen"), (A4_CSS_PX, "print")]
)
def test_no_horizontal_scroll(browser, report_path, width, media):
    session, _ = browser.open(report_path.as_uri(), width=width)
    browser.send("Emulation.setEmulatedMedia", session, media=media)
    layout = browser.evaluate(session, OVERFLOW)
    assert layout["scroll"] <= layout["width"], layout


def test_prints_to_pdf(browser, report_path):
    session, _ = browser.open(report_path.as_uri())
    pdf = base64.b64decode(
        browser.send("Page.printToPDF", session, paperWidth=8.27, paperHeight=11.69, preferCSSPageSize=True)["data"]
    )
    assert pdf[:5] == b"%PDF-" and len(pdf) > 50_000


@pytest.mark.parametrize(
    ("csp", "expected"),
    [(False, "request: http://127.0.0.1:65535/x.png"), (True, "log error: ")],
    ids=["request seen", "blocked by the CSP and logged"],
)
def test_the_checks_catch_an_external_image(browser, tmp_path, csp, expected):
    """Control: the same checks flag a page that asks for an external image."""
    from ml.report.report import CSP

    meta = f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' if csp else ""
    page = tmp_path / "external.html"
    page.write_text(
        f'<!DOCTYPE html><html><head>{meta}</head><body><img src="http://127.0.0.1:65535/x.png"></body></html>'
    )
    _, events = browser.open(page.as_uri())
    found = problems(events, page.as_uri())
    assert any(p.startswith(expected) for p in found), found
