"""The HTTP(S) folder transport (ESA's Apache autoindex, any server that lists files as links
and answers Range requests): listings with conditional GETs, header reads with Range, and
ranged bodies guarded by If-Range. Every read is capped while it streams."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING
from urllib.parse import quote

from .errors import FetchError, ListingError
from .headers import BLOCK, MAX_HEADER_BLOCKS
from .httpclient import HttpClient, is_transport_failure, map_error
from .listing import MAX_LISTING_CHARS, Listing, parse_html_listing
from .retry import Policy
from .transport import (
    NOT_MODIFIED,
    Head,
    ListingValidators,
    NotModified,
    RangeNotSatisfiable,
    Validators,
    checked_size,
    header_end,
)

if TYPE_CHECKING:
    import httpx

FIRST_HEADER_READ = 2 * BLOCK  # real primary headers are 2 blocks
MAX_HEAD_REQUESTS = 8  # Range requests for one header (each asks for twice as much)
IDENTITY = {"Accept-Encoding": "identity"}  # bytes as stored: sizes and Range offsets agree


def to_int(value: str | None, default: int) -> int:
    """An HTTP header's decimal value (ASCII digits only), else `default`."""
    text = (value or "").strip()
    return int(text) if text.isascii() and text.isdigit() else default


def http_date_to_iso(value: str | None) -> str | None:
    """An HTTP date as 'YYYY-MM-DDThh:mm:ss' (UTC), None when unreadable."""
    if not value:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(value)
        return moment.strftime("%Y-%m-%dT%H:%M:%S")
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a `Content-Range: bytes FIRST-LAST/TOTAL` header."""
    if not value:
        return None, None
    unit, _, spec = value.strip().partition(" ")
    if unit.lower() != "bytes":
        return None, None
    span, _, total_text = spec.partition("/")
    first_text = span.partition("-")[0].strip()
    total_text = total_text.strip()
    first = int(first_text) if first_text.isascii() and first_text.isdigit() else None
    total = int(total_text) if total_text.isascii() and total_text.isdigit() else None
    return first, total


def validators_of(response: httpx.Response, size: int | None) -> Validators:
    return Validators(response.headers.get("etag"), response.headers.get("last-modified"), size)


class HttpStream:
    """An open ranged GET: the body as it arrives, httpx errors mapped."""

    def __init__(self, url: str, stack: ExitStack, response: httpx.Response, start: int,
                 validators: Validators, what: str) -> None:
        self.url = url
        self.start = start
        self.validators = validators
        self._stack = stack
        self._response = response
        self._what = what

    def chunks(self) -> Iterator[bytes]:

        try:
            yield from self._response.iter_raw()  # identity encoding: raw is the file
        except Exception as exc:
            if not is_transport_failure(exc):
                raise
            raise map_error(exc, self._what, self.url) from exc

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> HttpStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HttpTransport:
    """An HTTP(S) folder served like ESA's (autoindex listing, Range, ETag)."""

    def __init__(self, url: str, *, timeout: float, retries: int, backoff: float,
                 pool: int = 16, host_connections: int | None = None) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.http = HttpClient(self.url, timeout=timeout, pool=pool,
                               policy=Policy(retries=retries, backoff=backoff),
                               host_connections=host_connections)
        self.policy = self.http.policy

    def close(self) -> None:
        self.http.close()

    def file_url(self, name: str) -> str:
        """The URL of a file named as the listing spells it (decoded; quoted here)."""
        return self.url + quote(name)

    # -- listing --------------------------------------------------------------------------
    def listing(self, known: ListingValidators | None = None) -> Listing | NotModified:
        headers = {}
        if known is not None and known.etag:
            headers["If-None-Match"] = known.etag
        if known is not None and known.last_modified:
            headers["If-Modified-Since"] = known.last_modified
        what = f"listing {self.url}"
        try:
            with self.http.request("GET", self.url, headers, what=what) as response:
                if response.status_code == 304 and headers:
                    return NOT_MODIFIED
                if response.status_code != 200:
                    raise ListingError(f"{what}: HTTP {response.status_code}")
                # capped while it streams (bytes >= characters: no page within the cap is lost
                # to it unless it is mostly multi-byte text, which listings are not)
                body = self.http.read_capped(response, MAX_LISTING_CHARS, what, self.url)
                encoding = response.charset_encoding or "utf-8"
                etag = response.headers.get("etag")
                modified = response.headers.get("last-modified")
        except FetchError as exc:
            raise ListingError(str(exc)) from exc
        try:
            text = body.decode(encoding, errors="replace")
        except LookupError:
            text = body.decode("utf-8", errors="replace")
        del body  # not kept while the page is parsed (23 MB for 100,000 names)
        listing = parse_html_listing(text, self.url)
        listing.etag, listing.last_modified = etag, modified
        return listing

    # -- header reads ---------------------------------------------------------------------
    def read_head(self, name: str) -> Head:
        """Read the first blocks until END with Range requests (stop early if Range is
        ignored); a server that sends too little, or too much, ends the read with an error."""
        url = self.file_url(name)
        what = f"header of {name}"
        cap = MAX_HEADER_BLOCKS * BLOCK
        want = FIRST_HEADER_READ
        data = b""
        deadline = time.monotonic() + 4 * self.http.timeout
        for _ in range(MAX_HEAD_REQUESTS):
            headers = {"Range": f"bytes={len(data)}-{want - 1}", **IDENTITY}
            with self.http.request("GET", url, headers, what=what) as response:
                status = response.status_code
                if status == 206:
                    first, total = content_range(response.headers.get("content-range"))
                    if first != len(data):
                        raise FetchError(f"{what}: the server answered another range "
                                         f"({response.headers.get('content-range')}) from {url}")
                    body = self.http.read_capped(response, want - len(data), what, url,
                                                 deadline)
                    data += body
                elif status == 200:  # Range ignored: read only what is needed
                    total = to_int(response.headers.get("content-length"), -1)
                    data = self._read_whole_head(response, what, url, deadline)
                elif status == 416:
                    total = len(data)
                else:
                    raise FetchError(f"{what}: HTTP {status} from {url}")
                etag = response.headers.get("etag")
                modified = http_date_to_iso(response.headers.get("last-modified"))
            if total is None or total < 0:
                raise FetchError(f"{what}: server gave no size for {url}")
            try:
                checked_size(total, what)
            except ValueError as exc:
                raise FetchError(f"{exc} from {url}") from None
            end = header_end(data)
            if end is not None or len(data) >= total or len(data) >= cap or status == 200:
                return Head(data[: end or len(data)], total, etag, modified)
            if status == 206 and not body:
                raise FetchError(f"{what}: an empty range from {url}")
            want = min(max(want, len(data)) * 2, cap, total)
        raise FetchError(f"{what}: the server sends too few bytes per range request ({len(data)} "
                         f"after {MAX_HEAD_REQUESTS} requests) from {url}")

    def _read_whole_head(self, response: httpx.Response, what: str, url: str,
                         deadline: float) -> bytes:

        data = b""
        try:
            for chunk in response.iter_raw(BLOCK * 4):
                data += chunk
                if header_end(data) is not None or len(data) > MAX_HEADER_BLOCKS * BLOCK:
                    break
                if time.monotonic() > deadline:
                    raise FetchError(f"{what}: too slow, still arriving after the deadline "
                                     f"from {url}")
        except Exception as exc:
            if not is_transport_failure(exc):
                raise
            raise map_error(exc, what, url) from exc
        return data

    # -- byte ranges ----------------------------------------------------------------------
    def open_range(self, name: str, start: int, since: Validators | None) -> HttpStream:
        """GET the file from `start` with If-Range set to `since`'s validator: a file that
        changed since comes whole (200) and the stream says so (start 0)."""
        url = self.file_url(name)
        what = f"download of {name}"
        headers = dict(IDENTITY)
        if start:
            condition = since.if_range() if since is not None else None
            if condition is None:
                start = 0  # nothing proves the bytes kept are of the file served now
            else:
                headers["Range"] = f"bytes={start}-"
                headers["If-Range"] = condition
        stack = ExitStack()
        try:
            response = stack.enter_context(self.http.request("GET", url, headers, what=what))
            status = response.status_code
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if status in (200, 206) and encoding not in ("", "identity"):
                raise FetchError(f"{what}: the server sent it encoded ({encoding[:40]}) "
                                 f"although asked for the bytes as stored, from {url}")
            if status == 200:
                size = to_int(response.headers.get("content-length"), -1)
                stream = HttpStream(url, stack, response, 0,
                                    validators_of(response, size if size >= 0 else None), what)
            elif status == 206 and start:
                first, total = content_range(response.headers.get("content-range"))
                if first != start:
                    raise FetchError(f"{what}: server resumed at the wrong byte ({first}, "
                                     f"not {start}) from {url}")
                try:
                    checked_size(total, what)
                except ValueError as exc:
                    raise FetchError(f"{exc} from {url}") from None
                stream = HttpStream(url, stack, response, start,
                                    validators_of(response, total), what)
            elif status == 416 and start:
                raise RangeNotSatisfiable(f"{what}: HTTP 416 at byte {start} from {url}")
            else:
                raise FetchError(f"{what}: HTTP {status} from {url}")
        except BaseException:
            stack.close()
            raise
        return stream
