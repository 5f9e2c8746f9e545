"""Real web servers' own index pages on 127.0.0.1: nginx's autoindex (Debian's nginx) and
python's http.server, each serving the test archive; a sync lists every name through them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ccfcache import Cache

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen) -> None:
    for _ in range(200):
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1.0, trust_env=False)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def nginx(archive, tmp_path: Path) -> Iterator[str]:
    """Debian's nginx with `autoindex on` serving full/ at ESA's path; yields its URL."""
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    port = free_port()
    conf = tmp_path / "nginx.conf"
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers read the 0700 tmp folders
    conf.write_text(
        f"daemon off;\n{user}pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        "events { worker_connections 64; }\n"
        f"http {{\n access_log off;\n client_body_temp_path {tmp_path}/body;\n"
        f" proxy_temp_path {tmp_path}/proxy;\n fastcgi_temp_path {tmp_path}/fcgi;\n"
        f" uwsgi_temp_path {tmp_path}/uwsgi;\n scgi_temp_path {tmp_path}/scgi;\n"
        f" server {{\n  listen 127.0.0.1:{port};\n"
        f"  location /pub/ccf/constituents/ {{ alias {archive.root}/full/; autoindex on; }}\n"
        " }\n}\n"
    )
    process = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(conf)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/pub/ccf/constituents/"
    try:
        wait_ready(url, process)
        yield url
    finally:
        stop(process)


@pytest.fixture
def python_http(archive, tmp_path: Path) -> Iterator[str]:
    """`python -m http.server` serving full/ (it ignores Range: whole bodies, read in part)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(archive.root / "full")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_ready(url, process)
        yield url
    finally:
        stop(process)


def _sync_and_fetch(url: str, archive, cache_dir: Path) -> None:
    with Cache(cache_dir, sources=[url], workers=4) as cache:
        report = cache.sync()
        assert report.sources == {url: len(archive.full_names())}
        assert report.failures == []
        listed = {row["name"] for row in cache.index.query("SELECT name FROM listings")}
        assert sorted(listed) == archive.full_names()
        name = archive.full_names()[-1]
        assert cache.path(name).read_bytes() == (archive.root / "full" / name).read_bytes()


def test_real_nginx_autoindex(nginx: str, archive, tmp_path: Path) -> None:
    page = httpx.get(nginx, trust_env=False).text
    assert "<h1>Index of /pub/ccf/constituents/</h1>" in page  # nginx's own page
    _sync_and_fetch(nginx, archive, tmp_path / "cache")
    with Cache(tmp_path / "cache") as cache:
        sizes = {row["name"]: row["size_hint"]
                 for row in cache.index.query("SELECT name, size_hint FROM listings")}
    for name, size in sizes.items():  # nginx shows exact sizes
        assert size == (archive.root / "full" / name).stat().st_size, name


def test_real_python_http_server(python_http: str, archive, tmp_path: Path) -> None:
    page = httpx.get(python_http, trust_env=False).text
    assert "Directory listing for /" in page
    _sync_and_fetch(python_http, archive, tmp_path / "cache")
