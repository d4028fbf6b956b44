"""``zsds users`` and ``zsds serve`` as a newcomer runs them: a real server process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from astropy.table import Table
from click.testing import CliRunner

from zsds.cli.main import cli

ZSDS = str(Path(sys.executable).with_name("zsds"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_users_then_serve(archive_home):
    runner = CliRunner()
    res = runner.invoke(cli, ["users", "add", "carol", "--home", str(archive_home.root),
                              "--password-stdin"], input="pw-carol\n")
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["users", "add", "carol", "--home", str(archive_home.root),
                              "--password-stdin"], input="x\n")
    assert res.exit_code != 0 and "exists" in res.output
    token = runner.invoke(cli, ["users", "token", "carol", "--home", str(archive_home.root)])
    assert token.exit_code == 0 and len(token.output.strip()) >= 40
    assert "carol" in runner.invoke(cli, ["users", "list", "--home", str(archive_home.root)]).output

    port = _free_port()
    proc = subprocess.Popen([ZSDS, "serve", "--home", str(archive_home.root), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "COLUMNS": "200"})
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
            assert time.time() < deadline, "zsds serve did not come up"
            time.sleep(0.2)
        text = httpx.get(f"{base}/ibe/search/ztf/products/sci",
                         params={"WHERE": "field=645"}).text
        t = Table.read(text, format="ipac")
        assert len(t) > 0 and set(t["field"]) == {645}, text[:2000]
        who = httpx.get(f"{base}/account/whoami",
                        headers={"Authorization": f"Bearer {token.output.strip()}"}).json()
        assert who["user"] == "carol"
        assert httpx.get(f"{base}/depot/").status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_serve_refuses_a_missing_home(tmp_path):
    res = CliRunner().invoke(cli, ["serve", "--home", str(tmp_path / "nope")])
    assert res.exit_code != 0 and "no such zsds home" in res.output
