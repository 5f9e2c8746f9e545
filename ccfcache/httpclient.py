"""The one HTTP client of every HTTP-based transport (an HTTP folder, S3): polite requests,
the retry policy of `retry.py`, same-host redirects, and the one mapping of httpx errors to
ccfcache errors (FetchError/TransferError with the URL).

HTTP/2 where the server offers it (ALPN, over TLS) when the `http2` extra is installed.
Polite: `User-Agent: ccfcache/<version> (+URL)` on every request, at most a few requests in
flight per host (shared by every worker of the process), 429/503 Retry-After honoured (also
by the host's other workers), proxies from HTTP_PROXY/HTTPS_PROXY/NO_PROXY as curl reads them.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from .errors import FetchError, TransferError
from .retry import RETRY_STATUSES, Policy, gate_for, retry_after_seconds, sleep_before_retry

if TYPE_CHECKING:
    import ssl

    import httpx

PROJECT_URL = "https://github.com/ccfcache/ccfcache"
MAX_REDIRECTS = 5
MAX_MESSAGE = 300  # characters of a server's text quoted in an error
REFUSED_RETRIES = 1  # a refused connection (nothing listens) is tried again once, not per policy
# `ccfcache -v` shows every request as httpx's client logs it (its logger, its line)
_REQUEST_LOG = logging.getLogger("httpx")


def user_agent() -> str:
    """`ccfcache/<version> (+project URL)`."""
    from .version import __version__

    return f"ccfcache/{__version__} (+{PROJECT_URL})"


def describe(exc: BaseException) -> str:
    """A short name for a network error: its class, and its text when it has one."""
    text = str(exc).replace("\n", " ")[:MAX_MESSAGE]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _raised_in_http2_layer(exc: BaseException) -> bool:
    """True for an exception raised inside httpcore's or h2's own code: an HTTP/2
    connection that the server closes (GOAWAY) while streams are in flight has ended them
    with a bare KeyError or RuntimeError from inside httpcore/h2 (upstream: encode/httpx#3072)
    instead of an httpx error; such a failure is the network's, not a traceback."""
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    if last is None:
        return False
    parts = last.replace("\\", "/").split("/")
    return "httpcore" in parts or "h2" in parts


def is_transport_failure(exc: BaseException) -> bool:
    """True when `exc` is the network's doing (an httpx error, or one of the HTTP/2 layer's
    races), so that it becomes a ccfcache error instead of a traceback."""
    import httpx

    if isinstance(exc, httpx.HTTPError):
        return True
    races = (KeyError, RuntimeError, ValueError, AttributeError)
    return (isinstance(exc, races) or type(exc).__module__.startswith("h2.")) and (
        _raised_in_http2_layer(exc))


def map_error(exc: BaseException, what: str, url: str) -> FetchError:
    """The ccfcache error for an httpx error (or an HTTP/2 layer race, see
    `is_transport_failure`) met while doing `what` with `url`: a cut transfer (timeouts,
    resets, protocol errors) is a TransferError, worth another try."""
    import httpx

    if isinstance(exc, (httpx.TransportError, httpx.DecodingError, httpx.StreamError)) or (
            not isinstance(exc, httpx.HTTPError) and is_transport_failure(exc)):
        return TransferError(f"{what}: {describe(exc)} from {url}")
    return FetchError(f"{what}: {describe(exc)} from {url}")


def http2_available() -> bool:
    """True when the `h2` package is installed (the `http2` extra): HTTPS sources then offer
    HTTP/2, over one connection per worker thread (see `HttpClient`)."""
    import importlib.util

    return importlib.util.find_spec("h2") is not None


READ_BYTES = 1 << 20  # what an HTTP/1.1 connection asks the socket for at a time


def _larger_reads() -> None:
    """Make httpcore's HTTP/1.1 connections read up to READ_BYTES per socket read instead of
    64 KiB: a download then costs 16x fewer chunks through h11, writes and hash updates
    (`Cache.fetch` of a CIF's 121 files, 138.5 MB: 8.7/7.9 -> 6.2/6.1 s, user CPU 1.28 ->
    1.04 s, side by side on a loaded machine). It is httpcore's class attribute, so it applies
    to every httpx client in the process; a read returns what has arrived, never waits for
    more. Left alone when httpcore no longer has it."""
    try:
        from httpcore._sync.http11 import HTTP11Connection
    except ImportError:  # pragma: no cover - another httpcore layout
        return
    if getattr(HTTP11Connection, "READ_NUM_BYTES", READ_BYTES) < READ_BYTES:
        HTTP11Connection.READ_NUM_BYTES = READ_BYTES


def _tls_context() -> ssl.SSLContext:
    """The TLS context the process's clients share: the system's CAs, or those of
    SSL_CERT_FILE / SSL_CERT_DIR (httpx's rules, as `verify=True` would give each client),
    built once per value of those variables."""
    return _tls_context_for(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.cache
def _tls_context_for(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    import httpx

    return httpx.create_ssl_context(verify=True, trust_env=True)


def needs_tls(scheme: str, environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """True when a source of this URL scheme may make a TLS connection: an https source, or
    any source while a proxy is set in the environment (the proxy may be an https one)."""
    return scheme != "http" or any(key.lower().endswith("_proxy") and key.lower() != "no_proxy"
                                   for key in environ)


@functools.cache
def _unused_tls_context() -> ssl.SSLContext:
    """The context of a plain-HTTP client without a proxy, which never makes a TLS
    connection: it loads no CA certificates (~0.1 CPU-s of a cold CIF's start) and, were it
    ever used, verifies as strictly as the real one (against no CA: every peer fails)."""
    import ssl

    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


class HttpClient:
    """An httpx client with the project's policy; one per source.

    Over HTTP/1.1 the source's threads share one client and its pool of connections. Over
    HTTP/2 each thread has a client (and a connection) of its own: httpcore's synchronous
    HTTP/2 connection lets threads drive one `h2` state machine at once without a lock
    (`send_headers` races the HPACK encoder: a "deque mutated during iteration" in hpack, and
    KeyError/RuntimeError when the server ends the connection; tests/test_http2.py makes
    nginx end a connection every 3 requests), and a corrupted HPACK table could ask the
    server for another path than the one meant."""

    def __init__(self, base_url: str, *, timeout: float, policy: Policy, pool: int = 16,
                 host_connections: int | None = None) -> None:
        _larger_reads()
        self.policy = policy
        split = urlsplit(base_url)
        self.origin = split[:2]
        self.gate = gate_for(split.hostname or "", split.port, host_connections)
        self.timeout = timeout
        self.pool = pool
        self.http2 = split.scheme == "https" and http2_available()
        self.tls = needs_tls(split.scheme)
        self.request_hooks: list[Callable[[httpx.Request], None]] = []
        self._lock = threading.Lock()
        self._clients: list[httpx.Client] = []
        self._local = threading.local()
        self._shared: httpx.Client | None = None if self.http2 else self._new_client()
        self._extensions: dict[str, dict[str, float | None]] | None = None
        self._defaults: dict[str, tuple[str, str]] | None = None

    def _new_client(self) -> httpx.Client:
        import httpx

        client = httpx.Client(
            http2=self.http2,
            timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
            follow_redirects=False,
            # (one per process: building one costs ~0.1 CPU-s; none for plain HTTP)
            verify=_tls_context() if self.tls else _unused_tls_context(),
            trust_env=True,  # HTTP(S)_PROXY, ALL_PROXY, NO_PROXY, SSL_CERT_FILE, as curl
            limits=httpx.Limits(max_connections=self.pool,
                                max_keepalive_connections=self.pool),
            headers={"User-Agent": user_agent()},
            event_hooks={"request": list(self.request_hooks)},
        )
        with self._lock:
            self._clients.append(client)
        return client

    @property
    def client(self) -> httpx.Client:
        """The client this thread sends with (see the class's text)."""
        if self._shared is not None:
            return self._shared
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._new_client()
        return client

    def add_request_hook(self, hook: Callable[[httpx.Request], None]) -> None:
        """Call `hook` on every request before it is sent (S3 signing), on every client."""
        with self._lock:
            self.request_hooks.append(hook)
            for client in self._clients:
                client.event_hooks["request"] = list(self.request_hooks)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()

    def _send_once(self, method: str, url: str, headers: dict[str, str],
                   what: str) -> httpx.Response:
        """One request, following same-host redirects (a few)."""
        target = url
        for _ in range(MAX_REDIRECTS + 1):
            response = self._send(method, target, headers)
            if not response.has_redirect_location:  # (a 304 is no redirect)
                return response
            location = urljoin(target, response.headers.get("location", ""))
            response.close()
            if urlsplit(location)[:2] != self.origin:
                raise FetchError(f"{what}: refused redirect to another host ({location})")
            target = location
        return response  # still a redirect: the caller reports its status

    def _send(self, method: str, url: str, headers: dict[str, str]) -> httpx.Response:
        """Send one request straight to the transport httpx would choose for its URL (a
        proxy's from HTTP(S)_PROXY, else the client's own pool), the request hooks applied.

        `httpx.Client.send` does the same, plus what ccfcache never uses: cookies (a jar
        filled from every response and merged into every request), authentication flows,
        redirects (followed here, by `_send_once`) and per-response timing (its log line of
        each request is written here, for `ccfcache -v`); that cost ~0.4 ms
        of CPU per request, a quarter of a header read's (single thread, 200 ranged GETs,
        side by side). A client without httpx's `_transport_for_url` is sent to as before."""
        import httpx

        client = self.client
        pick = getattr(client, "_transport_for_url", None)
        if pick is None:  # pragma: no cover - another httpx
            request = client.build_request(method, url, headers=headers)
            return client.send(request, stream=True)
        if self._defaults is None or self._extensions is None:
            # the client's own default headers (Accept, Accept-Encoding, Connection,
            # User-Agent), by lower-case name so that the caller's replace them
            self._defaults = {key.decode("latin-1").lower(): (key.decode("latin-1"),
                                                              value.decode("latin-1"))
                              for key, value in client.headers.raw}
            self._extensions = {"timeout": client.timeout.as_dict()}
        merged = dict(self._defaults)
        for key, value in headers.items():
            merged[key.lower()] = (key, value)
        request = httpx.Request(method, url, headers=list(merged.values()),
                                extensions=dict(self._extensions))
        for hook in self.request_hooks:
            hook(request)
        response: httpx.Response = pick(request.url).handle_request(request)
        response.request = request
        if _REQUEST_LOG.isEnabledFor(logging.INFO):
            _REQUEST_LOG.info('HTTP Request: %s %s "%s %d %s"', request.method, request.url,
                              response.http_version, response.status_code,
                              response.reason_phrase)
        return response

    @contextmanager
    def request(self, method: str, url: str, headers: dict[str, str] | None = None, *,
                what: str) -> Iterator[httpx.Response]:
        """A response with its body unread, after retries of connection errors, 5xx and 429
        (Retry-After honoured, in seconds or as a date, capped). Holds one of the host's
        request slots until the body is closed."""
        import httpx

        headers = headers or {}
        last = ""
        tries = 0
        for attempt in range(self.policy.retries + 1):
            retry_after: float | None = None
            tries = attempt + 1
            with self.gate.slot():
                try:
                    response = self._send_once(method, url, headers, what)
                except Exception as exc:
                    if not is_transport_failure(exc):
                        raise
                    error = map_error(exc, what, url)
                    if not isinstance(error, TransferError):
                        raise error from exc
                    last = describe(exc)
                    if isinstance(exc, httpx.ConnectError) and attempt >= REFUSED_RETRIES:
                        break  # nobody listens there: say so now, not after every backoff
                else:
                    if response.status_code not in RETRY_STATUSES:
                        try:
                            yield response
                        finally:
                            response.close()
                        return
                    last = f"HTTP {response.status_code}"
                    retry_after = retry_after_seconds(response.headers.get("retry-after"),
                                                      cap=self.policy.max_retry_after)
                    response.close()
            if attempt < self.policy.retries:
                sleep_before_retry(self.policy, attempt, retry_after, self.gate)
        raise FetchError(f"{what}: {last} (gave up after {tries} tries) from {url}")

    def read_capped(self, response: httpx.Response, cap: int, what: str, url: str,
                    deadline: float | None = None) -> bytes:
        """The body, read as it streams; more than `cap` bytes, or a body still arriving at
        `deadline` (time.monotonic()), raises FetchError without reading the rest."""

        deadline = deadline if deadline is not None else time.monotonic() + 4 * self.timeout
        parts: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > cap:
                    raise FetchError(f"{what}: more than {cap} bytes from {url}; refused")
                if time.monotonic() > deadline:
                    raise TransferError(f"{what}: too slow, still arriving after the deadline"
                                        f" from {url}")
                parts.append(chunk)
        except Exception as exc:
            if not is_transport_failure(exc):
                raise
            raise map_error(exc, what, url) from exc
        return b"".join(parts)
