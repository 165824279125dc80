"""Every ```console example of README.md and docs/*.md, run as written
against a fresh memcached-lite; and every relative link of those pages
resolves (file and #anchor).

Convention (docs/testing.md, "The documentation's examples", says the same):

- ```console blocks are run. ```sh, ```python, ```text and ```csv blocks
  are not: they hold what this test cannot provide (docker, kubectl, a TLS
  certificate, cargo builds and installs, a server left running in the
  foreground, files of a previous step such as backup.csv or a damaged
  data directory) or are not shell commands.
- In a console block a line starting with `$ ` is a command; a command
  line ending in `\\` continues on the next line. The lines after a
  command, up to the next `$ ` line, are its expected output. A command
  followed by no output lines has its output not checked.
- Each block gets a fresh server (own data dir, free loopback ports) and a
  fresh empty directory, in which its commands run one after another with
  `bash -c`; `memcached-lite` on PATH is the binary under test
  (MEMCACHED_LITE_BIN) and `tests/` is a link to the repository's tests/.
  The default ports 11211 and 8080 are rewritten to the server's ports.
  Each command must end by itself within 20 s and exit 0.
- A command's standard output is compared with the shown output line by
  line (standard error is not compared: curl's progress meter goes there
  when its output is not a terminal). `\\r`, trailing whitespace and
  trailing blank lines are ignored, and a run of spaces matches any run
  of spaces. A placeholder `<word>` (such as `<cas>`, `<ms>`) in an
  expected line matches any text within that line; a line that is just
  `...` matches any number of lines, none included.
- An HTML comment right before the block adjusts the set-up:
  `<!-- example-setup: CMD -->` runs CMD with bash in the block's
  directory before the server starts, `<!-- example-server: ARGS -->`
  adds ARGS to `memcached-lite serve` (paths relative to that directory).
"""
import glob
import os
import re
import shutil
import signal
import subprocess
import tempfile

import pytest

from conftest import BIN, ROOT, Server

PAGES = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
TIMEOUT = 20


class Example:
    def __init__(self, page, line, setup, server_args):
        self.page, self.line = page, line
        self.setup, self.server_args = setup, server_args
        self.commands = []  # [(command, [expected output lines])]

    @property
    def id(self):
        return f"{os.path.relpath(self.page, ROOT)}:{self.line}"


def console_examples(page):
    lines = open(page, encoding="utf-8").read().split("\n")
    examples, i = [], 0
    while i < len(lines):
        if lines[i].strip() != "```console":
            i += 1
            continue
        setup, server_args = [], []
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("<!--"):
            m = re.match(r"<!--\s*example-(setup|server):\s*(.*?)\s*-->$", lines[j].strip())
            assert m, f"{page}:{j + 1}: unknown comment before a console block"
            (setup if m.group(1) == "setup" else server_args).insert(0, m.group(2))
            j -= 1
        ex = Example(page, i + 1, setup, " ".join(server_args).split())
        i += 1
        while lines[i].strip() != "```":
            line = lines[i]
            if line.startswith("$ "):
                cmd = line[2:]
                while cmd.endswith("\\"):
                    i += 1
                    cmd += "\n" + lines[i]
                ex.commands.append((cmd, []))
            else:
                assert ex.commands, f"{page}:{i + 1}: output before the first `$ ` command"
                ex.commands[-1][1].append(line)
            i += 1
        examples.append(ex)
        i += 1
    return examples


EXAMPLES = [ex for page in PAGES for ex in console_examples(page)]


def line_pattern(expected):
    parts = re.split(r"(<[a-z][a-z0-9_-]*>| +)", expected.rstrip())
    regex = "".join(".*" if p.startswith("<") else " +" if p.startswith(" ") else re.escape(p)
                    for p in parts if p)
    return re.compile(regex + r"\Z")


def output_matches(expected, actual):
    """expected lines (with placeholders and `...`) against actual lines."""
    if not expected:
        return True
    if expected[0].strip() == "...":
        return any(output_matches(expected[1:], actual[k:]) for k in range(len(actual) + 1))
    return bool(actual) and bool(line_pattern(expected[0]).match(actual[0].rstrip())) \
        and output_matches(expected[1:], actual[1:])


def with_ports(text, server):
    text = re.sub(r"\b11211\b", str(server.port), text)
    return re.sub(r"\b8080\b", str(server.http_port), text)


def run(cmd, cwd, env):
    """bash -c cmd; (exit status, output), or None if it did not end in TIMEOUT s."""
    proc = subprocess.Popen(["bash", "-c", cmd], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def lines_of(text):
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="mcl-docs-")
    bindir = os.path.join(d, ".bin")
    os.mkdir(bindir)
    os.symlink(os.path.abspath(BIN), os.path.join(bindir, "memcached-lite"))
    os.symlink(os.path.join(ROOT, "tests"), os.path.join(d, "tests"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_there_are_console_examples():
    assert len(EXAMPLES) >= 4
    assert all(ex.commands for ex in EXAMPLES), [ex.id for ex in EXAMPLES if not ex.commands]


@pytest.mark.parametrize("ex", EXAMPLES, ids=[ex.id for ex in EXAMPLES])
def test_console_example(ex, workdir):
    env = {**os.environ, "PATH": os.path.join(workdir, ".bin") + os.pathsep + os.environ["PATH"],
           "MEMCACHED_LITE_LOG": "warn"}
    for cmd in ex.setup:
        subprocess.run(["bash", "-c", cmd], cwd=workdir, env=env, check=True, timeout=TIMEOUT)
    args = [os.path.join(workdir, a) if os.path.exists(os.path.join(workdir, a)) else a
            for a in ex.server_args]
    server = Server(*args)
    try:
        for cmd, expected in ex.commands:
            shown = with_ports(cmd, server)
            result = run(shown, workdir, env)
            assert result is not None, f"{ex.id}: `{cmd}` did not end within {TIMEOUT} s"
            status, out, err = result
            assert status == 0, f"{ex.id}: `{cmd}` exited {status}:\n{out}{err}"
            actual = lines_of(out)
            want = lines_of("\n".join(with_ports(line, server) for line in expected))
            assert output_matches(want, actual), (
                f"{ex.id}: `{cmd}` printed\n" + "\n".join(actual) + "\nexpected\n" + "\n".join(want)
                + ("\nstandard error:\n" + err if err else ""))
    finally:
        server.cleanup()


def github_anchor(heading):
    text = re.sub(r"[`*_]|\[([^]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page):
    found, fenced = set(), False
    for line in open(page, encoding="utf-8"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            found.add(github_anchor(line.lstrip("#").strip()))
    return found


@pytest.mark.parametrize("page", PAGES, ids=[os.path.relpath(p, ROOT) for p in PAGES])
def test_relative_links_resolve(page):
    prose, fenced = [], False
    for line in open(page, encoding="utf-8"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            prose.append(line)
    text = "".join(prose)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        if not os.path.exists(dest):
            broken.append(target)
        elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
            broken.append(target)
    assert not broken, f"{os.path.relpath(page, ROOT)}: broken links {broken}"
