"""pymemcache's own integration suite, shipped in its wheel, against memcached-lite."""
import os
import subprocess
import sys

import pymemcache


def test_pymemcache_integration_suite_passes(server):
    suite = os.path.join(os.path.dirname(pymemcache.__file__), "test", "test_integration.py")
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", suite,
         "-m", "integration", "--server", "127.0.0.1", "--port", str(server.port)],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and "failed" not in out.stdout, out.stdout[-2000:]
