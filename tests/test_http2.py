"""HTTP/2 against a real server: Debian's nginx with TLS on 127.0.0.1 (self-signed certificate,
trusted through SSL_CERT_FILE) serves a generated archive with autoindex; ccfcache syncs and
builds a CIF, and nginx's own access log says which protocol every request used."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccfcache.demo.archive import Manifest

pytestmark = [
    pytest.mark.skipif(shutil.which("nginx") is None,
                       reason="nginx is not installed (apt-get install -y nginx; .ci/run does)"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def nginx(request: pytest.FixtureRequest, tmp_path: Path,
          archive: Manifest) -> Iterator[tuple[str, Path, Path]]:
    """nginx serving the archive's full/ and valid/ at ESA's paths over HTTPS with HTTP/2;
    yields (base URL, certificate, access log). An indirect parameter adds directives to
    nginx's http block."""
    extra = getattr(request, "param", "")
    pytest.importorskip("h2", reason="the http2 extra is not installed (pip install '.[http2]')")
    root = tmp_path / "nginx"
    (root / "logs").mkdir(parents=True)
    cert, key = root / "cert.pem", root / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    port = _free_port()
    log = root / "logs" / "access.log"
    user = "user root;" if os.geteuid() == 0 else ""  # workers must read the pytest tmp dir
    (root / "nginx.conf").write_text(f"""
{user}
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/logs/error.log;
events {{ worker_connections 256; }}
http {{
  log_format proto '$server_protocol $status $request_method $uri $connection_requests';
  access_log {log} proto;
  {extra}
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl http2;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location /pub/ccf/constituents/ {{ alias {archive.root}/full/; autoindex on; }}
    location /pub/ccf/valid_constituents/ {{ alias {archive.root}/valid/; autoindex on; }}
  }}
}}
""")
    proc = subprocess.Popen(["nginx", "-p", str(root), "-c", str(root / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    errors = (root / "logs" / "error.log").read_text()[:500]
                    pytest.fail(f"nginx did not start: {errors}")
                time.sleep(0.05)
        yield f"https://127.0.0.1:{port}", cert, log
    finally:
        proc.terminate()
        proc.wait(10)


def test_sync_and_cif_over_http2(nginx, tmp_path, archive, monkeypatch):
    from ccfcache import Cache

    base, cert, log = nginx
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust the self-signed certificate
    urls = [f"{base}/pub/ccf/constituents/", f"{base}/pub/ccf/valid_constituents/"]
    with Cache(tmp_path / "cache", sources=urls, workers=4) as cache:
        report = cache.sync()
        assert report.read == len(archive.full_names()) + len(archive.valid_names())
        assert not report.failures
        result = cache.cif("2015-06-01", None, tmp_path / "ccf.cif")
    assert result.rows and result.path.is_file()
    for row in result.rows:  # what was fetched over h2 is what nginx served
        assert (Path(result.view_dir) / row["name"]).read_bytes() == (
            archive.root / "full" / row["name"]).read_bytes()
    lines = log.read_text().splitlines()
    # listings, headers (one read for a name both folders list), downloads
    assert len(lines) >= len(archive.full_names()) + len(result.rows) + 2
    protocols = {line.split()[0] for line in lines}
    assert protocols == {"HTTP/2.0"}, protocols


@pytest.mark.parametrize("nginx", ["keepalive_requests 3;"], indirect=True)
def test_sync_over_http2_connections_the_server_closes_often(nginx, tmp_path, archive,
                                                             monkeypatch):
    """nginx ends each HTTP/2 connection (GOAWAY) after its 3rd request while sixteen
    threads read headers: every sync ends complete, never with a traceback from the HTTP/2
    layer. Before each thread had a connection of its own, the threads shared one h2 state
    machine: KeyError, "dictionary keys changed during iteration", hpack's "deque mutated
    during iteration", or header reads that gave up after 5 tries."""
    from ccfcache import Cache

    base, cert, log = nginx
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    urls = [f"{base}/pub/ccf/constituents/", f"{base}/pub/ccf/valid_constituents/"]
    for attempt in range(3):
        with Cache(tmp_path / f"cache{attempt}", sources=urls, workers=16) as cache:
            report = cache.sync()
            assert not report.failures, report.failures
            assert report.read == len(archive.full_names()) + len(archive.valid_names())
    per_connection = [int(line.split()[-1]) for line in log.read_text().splitlines()]
    assert max(per_connection) == 3  # nginx did end connections after 3 requests
