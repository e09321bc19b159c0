"""Docs that run: every command and snippet in README.md and docs/ runs verbatim or says why not.

Each ```bash / ```python block is preceded by one marker line:

- ``<!-- no-hardware -->``: this test runs it verbatim, as a new user would: from a fresh folder
  holding the checkout's examples/ and benchmarks/, with an empty model cache and no
  ``EDGEPOSE_MODEL_DIR`` (so only what the package ships or ``edgepose fetch`` gets is there).
  ``<!-- no-hardware; server: CMD -->`` starts ``CMD`` first and stops it afterwards.
- ``<!-- tested: PATH::NAME -->``: run by that test (or by ``.ci/run``), which must exist.
- ``<!-- slow: WHY -->``: runs verbatim like a no-hardware block, but only with ``-m slow``
  (regenerating a results table takes minutes); the assets folder is ``$EDGEPOSE_ASSETS``.
- ``<!-- needs-hardware: WHY -->``: needs a board, a camera or a GPU.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:^(<!--[^\n]*-->)\n)?^```(bash|python|sh)\n(.*?)\n```", re.S | re.M)


def _blocks():
    out = []
    for doc in DOCS:
        for m in BLOCK.finditer(doc.read_text(encoding="utf-8")):
            line = doc.read_text(encoding="utf-8")[: m.start()].count("\n") + 1
            out.append((doc.relative_to(REPO).as_posix(), line, m.group(1) or "", m.group(2), m.group(3)))
    return out


BLOCKS = _blocks()
RUNNABLE = [b for b in BLOCKS if b[2].startswith("<!-- no-hardware")]
SLOW = [b for b in BLOCKS if b[2].startswith("<!-- slow:")]


def test_every_documented_command_is_run_by_a_test_or_marked_as_needing_hardware():
    bad = []
    for doc, line, marker, _, _ in BLOCKS:
        m = re.match(r"<!-- (no-hardware(?:; server: .+)?|tested: (\S+)|needs-hardware: .+|slow: .+) -->$", marker)
        if not m:
            bad.append(f"{doc}:{line}: no marker (no-hardware / tested: / needs-hardware:)")
            continue
        if m.group(2):
            path, _, name = m.group(2).partition("::")
            target = REPO / path
            if not target.is_file() or (name and f"def {name}(" not in target.read_text()):
                bad.append(f"{doc}:{line}: 'tested: {m.group(2)}' names no such test")
    assert not bad, "\n".join(bad)
    assert len(RUNNABLE) >= 6, RUNNABLE  # the install guide's and the serving guide's


@pytest.fixture(scope="module")
def user_env(tmp_path_factory):
    """A fresh user's folder and environment: empty cache, no model folder of the test suite."""
    home = tmp_path_factory.mktemp("user")
    for d in ("examples", "benchmarks"):
        (home / d).symlink_to(REPO / d)
    env = {k: v for k, v in os.environ.items() if k not in ("EDGEPOSE_MODEL_DIR", "EDGEPOSE_PROFILE_DIR")}
    env["XDG_CACHE_HOME"] = str(home / ".cache")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return home, env


def _start(cmd: str, cwd, env):
    proc = subprocess.Popen(shlex.split(cmd), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    line = proc.stdout.readline()  # the start line, printed once the port is bound and models loaded
    assert proc.poll() is None, (cmd, line, proc.stderr.read())
    return proc


@pytest.mark.backend
@pytest.mark.parametrize("doc,line,marker,lang,code", RUNNABLE, ids=[f"{b[0]}:{b[1]}" for b in RUNNABLE])
def test_no_hardware_blocks_run_verbatim_on_a_fresh_setup(user_env, doc, line, marker, lang, code):
    _run_block(user_env, doc, line, marker, lang, code)


@pytest.mark.slow
@pytest.mark.parametrize("doc,line,marker,lang,code", SLOW, ids=[f"{b[0]}:{b[1]}" for b in SLOW])
def test_slow_blocks_run_verbatim(user_env, assets, doc, line, marker, lang, code):
    home, env = user_env
    _run_block((home, {**env, "EDGEPOSE_ASSETS": str(assets)}), doc, line, marker, lang, code)


def _run_block(user_env, doc, line, marker, lang, code):
    home, env = user_env
    server = None
    m = re.match(r"<!-- no-hardware; server: (.+) -->$", marker)
    if m:
        server = _start(m.group(1), home, env)
    try:
        argv = ["bash", "-euo", "pipefail", "-c", code] if lang in ("bash", "sh") else [sys.executable, "-c", code]
        t0 = time.perf_counter()
        proc = subprocess.run(argv, cwd=home, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{doc}:{line} failed after {time.perf_counter() - t0:.0f} s\n" \
                                     f"{code}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr, proc.stderr
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGINT)
            server.wait(timeout=30)
