"""The Ray dashboard of a running tiny run, opened in a real browser: headless Chromium (Debian's
``chromium``) finds the run's stages, each a Ray job, on the Jobs page, and a screenshot of the
page is kept as a test artifact (``$RLPLAT_TEST_ARTIFACTS``, else ``test-artifacts/``).

Ray 2.60 turns token authentication on, and the dashboard opens with an "Authentication Token
Required" dialog. The test signs in as a person does: it types the token (``~/.ray/auth_token``)
into the dialog and presses SUBMIT; the page then POSTs it to ``/api/authenticate`` and the
dashboard sets its ``ray-authentication-token`` cookie. Chromium is driven over its DevTools
protocol (a websocket, with ``aiohttp``); ``--disable-background-networking`` keeps it off the
(closed) network.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from launch_helpers import FAST, finish, free_port, plugin_env, wait_until_serving
from launch_helpers import start as start_launcher

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("chromium") is None,
                                 reason="chromium is not installed (scripts/install-system.sh installs it)")]
ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = "http://127.0.0.1:8265"
# A quick first stage (a test plugin that hands its model on), then GRPO, running while the browser looks.
STAGES = ("pipeline_stages:PassOnStage", "grpo")
_CALL_IDS = itertools.count(1)



def _artifacts() -> Path:
    out = Path(os.environ.get("RLPLAT_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def _token() -> str:
    return (Path.home() / ".ray" / "auth_token").read_text().strip()


def _jobs() -> dict[str, str]:
    """Submission id -> status, from the Jobs API (``GET /api/jobs/`` with the token); empty while
    the dashboard is not up."""
    req = urllib.request.Request(f"{DASHBOARD}/api/jobs/", headers={"authorization": f"Bearer {_token()}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return {j["submission_id"]: j["status"] for j in json.loads(resp.read()) if j.get("submission_id")}
    except (OSError, ValueError):
        return {}


@pytest.fixture
def running_run(tmp_path: Path) -> Iterator[Path]:
    """A tiny two-stage run (``STAGES``), its stages as Ray jobs, yielded once the GRPO job runs;
    stopped with SIGTERM (a preemption: it checkpoints and exits 143) afterwards."""
    run_dir = tmp_path / "browser_run"
    fast = [a for a in FAST if not a.startswith(("cluster.dashboard=", "grpo.total_steps="))]
    proc = start_launcher(run_dir, *fast, "cluster.dashboard=true", f"stages=[{','.join(STAGES)}]", "grpo.total_steps=60",
                          "cluster.devices_per_node=1", fast=False, env=plugin_env())
    try:
        deadline = time.monotonic() + 600
        while not any("-grpo-" in k and v == "RUNNING" for k, v in _jobs().items()):
            assert proc.poll() is None and time.monotonic() < deadline, "the GRPO stage's job never ran"
            time.sleep(2)
        yield run_dir
        os.kill(proc.pid, signal.SIGTERM)  # the launcher only: it stops the stage's job itself
        rc, out = finish(proc, run_dir)
        assert rc == 143, out[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class DevToolsError(RuntimeError):
    """A DevTools command answered with an error."""


async def _cdp(ws: Any, method: str, **params: Any) -> dict[str, Any]:
    """One DevTools command; returns its result (events in between are skipped)."""
    call = next(_CALL_IDS)
    await ws.send_str(json.dumps({"id": call, "method": method, "params": params}))
    while True:
        msg = json.loads((await ws.receive()).data)
        if msg.get("id") == call:
            if "error" in msg:
                raise DevToolsError(f"{method}: {msg['error']}")
            return dict(msg.get("result", {}))


async def _wait_for_text(ws: Any, wanted: list[str], gone: str | None = None, timeout_s: float = 120) -> str:
    """The page's text once it holds every ``wanted`` string (and not ``gone``), or at the deadline."""
    text, deadline = "", time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            got = await _cdp(ws, "Runtime.evaluate", expression="document.body.innerText", returnByValue=True)
            text = str(got["result"].get("value", ""))
        except DevToolsError as err:
            # Signing in reloads the page: a call that meets the navigation ("Inspected target
            # navigated or closed") is asked again once the new page is there.
            if "navigated" not in str(err) and "context" not in str(err):
                raise
        if all(w in text for w in wanted) and (gone is None or gone not in text):
            break
        await asyncio.sleep(2)
    return text


async def _jobs_page_text(debug_port: int, token: str, wanted: list[str], png: Path) -> str:
    """Open the Jobs page, sign in through its token dialog, wait until every ``wanted`` text
    shows; take the screenshot; return the page's text."""
    import aiohttp

    with urllib.request.urlopen(f"http://127.0.0.1:{debug_port}/json/list", timeout=10) as resp:
        page = next(t for t in json.loads(resp.read()) if t["type"] == "page")
    async with aiohttp.ClientSession() as session, session.ws_connect(page["webSocketDebuggerUrl"],
                                                                       max_msg_size=0) as ws:
        await _cdp(ws, "Page.enable")
        await _cdp(ws, "Page.navigate", url=f"{DASHBOARD}/#/jobs")
        # The dashboard asks for the token in a dialog: type it and press SUBMIT, as a person does.
        assert "Authentication Token Required" in await _wait_for_text(ws, ["Authentication Token Required"])
        await _cdp(ws, "Runtime.evaluate", expression="document.querySelector('[role=dialog] input').focus()")
        await _cdp(ws, "Input.insertText", text=token)
        await _cdp(ws, "Runtime.evaluate", expression=(
            "[...document.querySelectorAll('button')].find(b => b.innerText.trim() === 'SUBMIT').click()"))
        text = await _wait_for_text(ws, wanted, gone="Authentication Token Required")
        shot = await _cdp(ws, "Page.captureScreenshot", format="png")
        png.write_bytes(base64.b64decode(shot["data"]))
        return text


def test_chromium_finds_the_runs_stages_on_the_jobs_page(running_run: Path) -> None:
    wanted = sorted(k for k in _jobs() if k.startswith(f"rlplat-{running_run.name}-"))
    assert sorted(w.split("-")[2] for w in wanted) == sorted(s.replace(":", "_") for s in STAGES), wanted
    token = _token()
    port, profile = free_port(), tempfile.mkdtemp(prefix="rlplat-chromium-")
    browser = subprocess.Popen(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                                f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
                                "--window-size=1400,900", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    png = _artifacts() / "ray_dashboard_jobs.png"
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/json/version", browser, 60, "chromium did not start")
        text = asyncio.run(_jobs_page_text(port, token, wanted, png))
    finally:
        os.killpg(browser.pid, signal.SIGKILL)
        browser.wait()
        shutil.rmtree(profile, ignore_errors=True)
    (png.parent / "ray_dashboard_jobs.txt").write_text(text)
    missing = [w for w in wanted if w not in text]
    assert not missing, f"not on the Jobs page: {missing}; the page said:\n{text[:2000]}"
    assert "Authentication Token Required" not in text  # signed in
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
