"""libmemcached's own tools against memcached-lite."""
import subprocess


def test_memcapable_ascii_passes_every_test(server):
    out = subprocess.run(
        ["memccapable", "-a", "-t", "5", "-h", "127.0.0.1", "-p", str(server.port)],
        capture_output=True, text=True, timeout=120,
    )
    report = out.stdout + out.stderr
    assert "All tests passed" in report, report
    assert "[FAIL]" not in report, report


def test_memcapable_binary_passes_every_test(server):
    out = subprocess.run(
        ["memccapable", "-b", "-t", "5", "-h", "127.0.0.1", "-p", str(server.port)],
        capture_output=True, text=True, timeout=120,
    )
    report = out.stdout + out.stderr
    assert "All tests passed" in report, report
    assert "[FAIL]" not in report, report
    assert "binary noop" in report and "binary getkq" in report, report
