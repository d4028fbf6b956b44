"""``zsds serve --workers N``: several uvicorn worker processes over one home and database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from zsds.core.home import Home
from zsds.db import connect, init_db

ZSDS = str(Path(sys.executable).with_name("zsds"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children(pid: int) -> set[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_serve_with_two_workers(tmp_path):
    home = Home.resolve(tmp_path / "home")
    home.root.mkdir()
    engine = connect(home.db_url)
    init_db(engine)
    engine.dispose()
    port = _free_port()
    proc = subprocess.Popen([ZSDS, "serve", "--home", str(home.root), "--port", str(port),
                             "--workers", "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(f"{base}/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.time() < deadline, "zsds serve --workers 2 did not come up"
            time.sleep(0.2)

        def search(i: int) -> int:
            # A fresh connection each time, so the kernel spreads them over the workers.
            return httpx.get(f"{base}/ibe/search/ztf/products/sci",
                             params={"WHERE": f"field={i}"}, timeout=30).status_code

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(search, range(40))) == [200] * 40

        def login(k: int) -> int:
            # A fresh connection each time: the guesses reach both workers, which share the
            # failed-login counts (the default limit is 5 per user name).
            return httpx.post(f"{base}/account/signon/login.do",
                              data={"josso_username": "mallory@example.org",
                                    "josso_password": f"guess{k}"}, timeout=30).status_code

        codes = [login(k) for k in range(8)]
        assert codes[:5] == [401] * 5 and codes[5:] == [429] * 3, codes
        # uvicorn's supervisor, its workers and multiprocessing's resource tracker.
        python_children = [p for p in _children(proc.pid)
                           if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]
        assert len(python_children) == 2, python_children
    finally:
        workers = _children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=20)
    assert rc == 0, proc.stdout.read().decode()[-3000:]
    deadline = time.time() + 5
    while any(_alive(p) for p in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers), "workers left running"
