"""Swagger UI in a real browser: headless Debian Chromium driven by
playwright-core (tests/browser/swagger-ui.mjs) against the real server.
The screenshot is kept in tests/artifacts/swagger-ui.png."""
import json
import os
import subprocess
import urllib.request

from pymemcache.client.base import Client

from conftest import ROOT, wait_http

SCRIPT = os.path.join(ROOT, "tests", "browser", "swagger-ui.mjs")


def test_swagger_ui_try_it_out_put_then_get(server):
    base = f"http://127.0.0.1:{server.http_port}"
    wait_http(base)
    run = subprocess.run(["node", SCRIPT, base], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "browser test passed" in run.stdout
    shot = os.path.join(ROOT, "tests", "artifacts", "swagger-ui.png")
    assert os.path.getsize(shot) > 10_000
    # The value written through the UI is really in the store.
    listing = json.load(urllib.request.urlopen(f"{base}/v1/keys?prefix=browser-"))
    assert [i["flags"] for i in listing["items"]] == [7], listing
    value = Client(("127.0.0.1", server.port)).get(listing["items"][0]["key"])
    assert value.startswith(b"hello from chromium")
