"""The HTTP client's policy (`ccfcache.httpclient`): how a network error is named and whether
it is worth another try, the User-Agent, and redirects kept on the source's host. Retries,
Retry-After and per-host caps against the real test server are in test_transport.py."""

from __future__ import annotations

import http.server
import os
import threading

import httpx
import pytest

from ccfcache.errors import FetchError, TransferError
from ccfcache.httpclient import (
    MAX_MESSAGE,
    HttpClient,
    describe,
    is_transport_failure,
    map_error,
    needs_tls,
    user_agent,
)
from ccfcache.retry import Policy
from ccfcache.version import __version__


def test_describe_is_one_short_line() -> None:
    assert describe(httpx.ReadTimeout("")) == "ReadTimeout"
    text = describe(httpx.ConnectError("refused\nby peer" + "x" * 1000))
    assert text.startswith("ConnectError: refused by peer") and "\n" not in text
    assert len(text) == len("ConnectError: ") + MAX_MESSAGE


@pytest.mark.parametrize("exc, retried", [
    (httpx.ReadTimeout("t"), True),
    (httpx.ConnectError("c"), True),
    (httpx.RemoteProtocolError("p"), True),
    (httpx.DecodingError("d"), True),
    (httpx.StreamClosed(), True),
    (httpx.InvalidURL("u"), False),
    (httpx.TooManyRedirects("r"), False),
])
def test_a_cut_transfer_is_worth_another_try(exc: Exception, retried: bool) -> None:
    error = map_error(exc, "download of X", "http://h/x")
    assert isinstance(error, FetchError)
    assert isinstance(error, TransferError) is retried
    assert str(error).startswith("download of X: ") and str(error).endswith(" from http://h/x")


def _raised_from(filename: str, exc: Exception) -> Exception:
    """`exc` as raised by code whose file is `filename`."""
    try:
        exec(compile("raise exc", filename, "exec"), {"exc": exc})
    except Exception as raised:
        return raised
    raise AssertionError("not raised")


@pytest.mark.parametrize("filename, failure", [
    ("/venv/lib/site-packages/httpcore/_sync/http2.py", True),
    ("/venv/lib/site-packages/h2/connection.py", True),
    ("/venv/lib/site-packages/ccfcache/sync.py", False),
])
def test_a_race_inside_the_http2_layer_is_the_networks_failure(filename: str,
                                                               failure: bool) -> None:
    """A bare KeyError from inside httpcore or h2 (an upstream race when a server ends an
    HTTP/2 connection) is a cut transfer, not a traceback; one from ccfcache's code is a bug
    and stays one."""
    exc = _raised_from(filename, KeyError(3))
    assert is_transport_failure(exc) is failure
    if failure:
        assert isinstance(map_error(exc, "header of X", "https://h/x"), TransferError)


def test_user_agent_names_the_version_and_project() -> None:
    agent = user_agent()
    assert agent.startswith(f"ccfcache/{__version__} (+https://") and agent.endswith(")")


def test_redirects_stay_on_the_sources_host(server) -> None:
    client = HttpClient(server.url("/pub/ccf/constituents/"), timeout=10.0,
                        policy=Policy(retries=0))
    try:
        server.set_fault("redirect", on="listing", times=1,
                         location=server.url("/pub/ccf/valid_constituents/"))
        with client.request("GET", server.url("/pub/ccf/constituents/"), what="listing") as r:
            assert r.status_code == 200 and str(r.url).endswith("/valid_constituents/")
        server.set_fault("redirect", on="listing", times=1,
                         location="http://elsewhere.example/pub/ccf/")
        with pytest.raises(FetchError, match="refused redirect to another host"):
            with client.request("GET", server.url("/pub/ccf/constituents/"), what="listing"):
                pass
    finally:
        client.close()


class _CookieServer(http.server.BaseHTTPRequestHandler):
    """Sets a cookie on every answer and keeps the request headers it was sent."""

    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        type(self).seen.append(dict(self.headers.items()))
        body = b"hello"
        self.send_response(200)
        self.send_header("Set-Cookie", "session=abc; Path=/")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def test_requests_carry_the_policys_headers_and_no_cookie_a_server_set() -> None:
    """Every request names ccfcache (User-Agent) and keeps the caller's headers; a server's
    Set-Cookie is never sent back (no cookie jar: requests do not depend on earlier answers,
    and a mirror cannot track the client)."""
    _CookieServer.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CookieServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/pub/"
    client = HttpClient(url, timeout=10.0, policy=Policy(retries=0))
    try:
        for _ in range(2):
            with client.request("GET", url, {"Accept-Encoding": "identity", "Range": "bytes=0-1"},
                                what="listing") as response:
                assert response.status_code == 200 and response.read() == b"hello"
                assert str(response.url) == url
    finally:
        client.close()
        server.shutdown()
        server.server_close()
    assert len(_CookieServer.seen) == 2
    for headers in _CookieServer.seen:
        lower = {key.lower(): value for key, value in headers.items()}
        assert lower["user-agent"] == user_agent()
        assert lower["accept-encoding"] == "identity" and lower["range"] == "bytes=0-1"
        assert "cookie" not in lower


def _ca_count(client: HttpClient) -> int:
    context = client.client._transport._pool._ssl_context  # type: ignore[attr-defined]
    return int(context.cert_store_stats()["x509_ca"])


def test_plain_http_loads_no_ca_certificates_unless_a_proxy_may_need_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the CA certificates is ~0.1 CPU-s of every start: a plain-HTTP source without
    a proxy makes no TLS connection and skips it; an https source, or any source while a
    proxy is set (it may be an https proxy), verifies against the system's CAs."""
    for key in [k for k in os.environ if k.lower().endswith("_proxy")]:
        monkeypatch.delenv(key)
    assert not needs_tls("http") and needs_tls("https")
    assert needs_tls("http", {"HTTPS_PROXY": "https://proxy:3128"})
    assert needs_tls("http", {"all_proxy": "http://proxy:3128"})
    assert not needs_tls("http", {"NO_PROXY": "localhost"})
    plain = HttpClient("http://127.0.0.1:9/pub/", timeout=5.0, policy=Policy(retries=0))
    secure = HttpClient("https://127.0.0.1:9/pub/", timeout=5.0, policy=Policy(retries=0))
    try:
        assert _ca_count(plain) == 0
        assert _ca_count(secure) > 0  # (this machine has CA certificates)
    finally:
        plain.close()
        secure.close()
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    proxied = HttpClient("http://127.0.0.1:9/pub/", timeout=5.0, policy=Policy(retries=0))
    try:
        assert _ca_count(proxied) > 0
    finally:
        proxied.close()
