"""libmemcached's own protocol checker, memcapable (Debian: memccapable), against memcached-lite."""
import subprocess

import pytest


@pytest.mark.parametrize("mode, sample", [("-a", "ascii stat"), ("-b", "binary getkq")])
def test_memcapable_passes_every_test(server, mode, sample):
    out = subprocess.run(
        ["memccapable", mode, "-t", "5", "-h", "127.0.0.1", "-p", str(server.port)],
        capture_output=True, text=True, timeout=120,
    )
    report = out.stdout + out.stderr
    assert "All tests passed" in report, report
    assert "[FAIL]" not in report, report
    assert sample in report, report  # the run covered this protocol's tests
