"""The HTTP contract: openapi/openapi.json is a valid OpenAPI document, it is
what the server serves and prints, and a property-based tester driven by it
(schemathesis, every check, stateful links included) finds no request the
server treats differently from what the document says.

SCHEMATHESIS_EXAMPLES (default 25) sets examples per operation and
SCHEMATHESIS_MAX_TIME (default 90 s) the time budget; raise both for a deeper
run. SCHEMATHESIS_SEED sets the seed (default: a fixed one, so the suite is
reproducible; `random` for a new one each run, printed on failure).
"""
import json
import os
import shutil
import subprocess
import sys
import urllib.request

import pytest

from conftest import BIN, ROOT, Server

DOC = os.path.join(ROOT, "openapi", "openapi.json")
CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemathesis.toml")


def served_document(server):
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/openapi.json") as resp:
        return json.load(resp)


def test_document_passes_openapi_spec_validator():
    from openapi_spec_validator import validate
    from openapi_spec_validator.readers import read_from_filename

    spec, _ = read_from_filename(DOC)
    validate(spec)


def test_validator_rejects_a_dangling_reference():
    """The validator test can fail: the shape of the original bug."""
    from openapi_spec_validator import validate

    with open(DOC) as f:
        spec = json.load(f)
    del spec["components"]["schemas"]["ArithResponse"]
    with pytest.raises(Exception):
        validate(spec)


def test_checked_in_document_is_served_and_printed(server):
    with open(DOC) as f:
        checked_in = json.load(f)
    printed = subprocess.run([BIN, "openapi"], check=True, capture_output=True).stdout
    assert json.loads(printed) == checked_in, "regenerate: cargo run -- openapi > openapi/openapi.json"
    assert served_document(server) == checked_in


def test_put_links_chain_the_same_key():
    with open(DOC) as f:
        doc = json.load(f)
    links = doc["paths"]["/v1/keys/{key}"]["put"]["responses"]["201"]["links"]
    for target in ["get_item", "delete_item", "incr_item"]:
        assert links[target] == {
            "operationId": target,
            "parameters": {"key": "$request.path.key"},
            "description": f"`{target}` on the key just written",
        }


def schemathesis_cli():
    exe = shutil.which("schemathesis") or shutil.which("st")
    if exe:
        return [exe]
    try:
        import schemathesis  # noqa: F401
    except ImportError:
        pytest.skip("schemathesis is not installed (pip install -r tests/clients/requirements.txt)")
    return [sys.executable, "-m", "schemathesis.cli"]


DEFAULT_SEED = "20261129"


def test_schemathesis_finds_no_contract_violation(tmp_path):
    server = Server()
    try:
        url = f"http://127.0.0.1:{server.http_port}/openapi.json"
        args = schemathesis_cli() + [
            "--config-file", CONFIG,
            "run", url,
            "--checks", "all",
            "--phases", "examples,coverage,fuzzing,stateful",
            # GET /v1/watch answers a stream that stays open, which a
            # request/response tester would wait on until its timeout;
            # tests/watch.rs checks it, its bad input included.
            "--exclude-operation-id", "watch",
            "--max-examples", os.environ.get("SCHEMATHESIS_EXAMPLES", "25"),
            "--max-time", os.environ.get("SCHEMATHESIS_MAX_TIME", "90"),
            "--workers", "1",
            "--no-color",
            "--report", "junit",
            "--report-dir", str(tmp_path),
        ]
        # A fixed seed by default, so the suite is reproducible: schemathesis
        # itself normalizes some generated Unicode (a listed key with U+00A0
        # came back as a plain space in one random run), which is its
        # artefact, not the server's. SCHEMATHESIS_SEED=random explores.
        seed = os.environ.get("SCHEMATHESIS_SEED", DEFAULT_SEED)
        if seed != "random":
            args += ["--seed", seed]
        run = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=600)
        out = run.stdout + run.stderr
        assert run.returncode == 0, out[-20000:]
        assert "Stateful" in out, out[-5000:]
    finally:
        assert server.stop() in (0, -15), "server exited with an error"
        server.cleanup()
