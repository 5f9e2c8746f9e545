"""The S3 transport: `s3://BUCKET/PREFIX/` listed with ListObjectsV2 (XML pages, following
continuation tokens), header reads and downloads with ranged GETs on the objects.

Public buckets (HEASARC's `nasa-heasarc`) are read anonymously, unsigned. With AWS
credentials in the environment ($AWS_ACCESS_KEY_ID, or a $AWS_PROFILE) requests are signed
with botocore's SigV4 signer (the optional extra `ccfcache[s3]`; no signing is written here);
$CCFCACHE_S3_ANONYMOUS=1 forces unsigned requests anyway. The endpoint is AWS's
(virtual-hosted `BUCKET.s3.amazonaws.com`) unless one is given (`--s3-endpoint`,
$AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, `s3_endpoint` in config.json): a site's own S3
(SeaweedFS, MinIO, Ceph) is then addressed path-style, `ENDPOINT/BUCKET/KEY`.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode, urlsplit

from .config import env
from .errors import FetchError, InvalidName, ListingError, UsageError
from .httpclient import HttpClient
from .listing import MAX_REJECTED_CHARS, Listing, ListingEntry
from .names import parse_name
from .retry import Policy
from .transport import ListingValidators, NotModified, checked_size
from .transport_http import HttpTransport

if TYPE_CHECKING:
    import httpx

MAX_PAGE_BYTES = 16 << 20  # one ListObjectsV2 page (1,000 keys) is ~0.3 MB
MAX_PAGES = 10_000  # 10 million keys: a longer chain of continuation tokens is refused
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.\-_]{1,254}", re.IGNORECASE)
_S3_DATE_RE = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.\d+)?(?:Z|[+-]00:?00)?")
_SIGNED_HEADERS = ("host", "range", "if-range", "if-none-match", "if-modified-since")


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, key prefix ending in '/' or empty) of `s3://BUCKET/PREFIX/`."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not _BUCKET_RE.fullmatch(parts.netloc or ""):
        raise UsageError(f"not an S3 URL (s3://BUCKET/PREFIX/): {url}")
    prefix = parts.path.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if any(part in (".", "..") for part in prefix.split("/")) or parts.query or parts.fragment:
        raise UsageError(f"an S3 prefix is a plain folder path: {url}")
    return parts.netloc, prefix


def bucket_url(bucket: str, endpoint: str | None, region: str | None = None) -> str:
    """The HTTP(S) URL of a bucket's root: path-style under a custom endpoint, else AWS's
    virtual-hosted name (path-style for bucket names with dots, which TLS cannot cover)."""
    if endpoint:
        if not endpoint.startswith(("http://", "https://")):
            raise UsageError(f"an S3 endpoint is an http(s):// URL, not {endpoint!r}")
        return endpoint.rstrip("/") + "/" + bucket + "/"
    host = "s3.amazonaws.com"
    if region and region != "us-east-1":
        host = f"s3.{region}.amazonaws.com"
    if "." in bucket:
        return f"https://{host}/{bucket}/"
    return f"https://{bucket}.{host}/"


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def parse_list_page(body: bytes, prefix: str, source: str,
                    listing: Listing) -> tuple[bool, str | None]:
    """Add one ListObjectsV2 page's objects to `listing`; return (truncated, next token).

    Keys outside the prefix, in sub-folders or not constituent names go to `rejected`
    (folder markers and sub-folders are skipped)."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise ListingError(f"{source}: the S3 listing declares a DTD; refused")
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise ListingError(f"{source}: the S3 listing is not XML ({exc})") from None
    if _local(root.tag) != "ListBucketResult":
        raise ListingError(f"{source}: not an S3 ListObjectsV2 answer (<{_local(root.tag)[:40]}>)")
    truncated, token = False, None
    for child in root:
        tag = _local(child.tag)
        if tag == "IsTruncated":
            truncated = (child.text or "").strip().lower() == "true"
        elif tag == "NextContinuationToken":
            token = (child.text or "").strip() or None
        elif tag == "Contents":
            fields = {_local(item.tag): (item.text or "") for item in child}
            _add_object(fields, prefix, source, listing)
    return truncated, token


def _add_object(fields: dict[str, str], prefix: str, source: str, listing: Listing) -> None:
    key = fields.get("Key", "")
    if key.endswith("/"):
        return  # a folder marker
    if not key.startswith(prefix):
        listing.rejected.append(key[:MAX_REJECTED_CHARS])
        return
    rest = key[len(prefix):]
    segments = rest.split("/")
    if len(segments) > 1 and not any(s in ("", ".", "..") or "\\" in s for s in segments):
        return  # a file in a sub-folder (a ListObjectsV2 with a delimiter lists none)
    try:
        if len(segments) > 1 or "\\" in rest or ".." in rest:
            raise InvalidName(rest)
        name = parse_name(rest).name
    except InvalidName:
        listing.rejected.append(rest[:MAX_REJECTED_CHARS])
        return
    size_text = fields.get("Size", "").strip()
    size = int(size_text) if size_text.isascii() and size_text.isdigit() else None
    try:
        checked_size(size, f"{source}: {rest}")
    except ValueError:
        size = None
    match = _S3_DATE_RE.fullmatch(fields.get("LastModified", "").strip())
    mtime = match[1] if match else None
    if name in listing.entries:  # a case variant of a name already listed: keep the first
        listing.rejected.append(rest)
        return
    listing.entries[name] = ListingEntry(name=name, href=rest, size=size, size_hint=size,
                                         mtime=mtime)


def make_signer(region: str | None) -> Callable[[httpx.Request], None] | None:
    """A request hook that signs with SigV4 (botocore), or None for anonymous access."""
    if (env("CCFCACHE_S3_ANONYMOUS") or "").strip() not in ("", "0"):
        return None
    if not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")):
        return None
    try:
        import botocore.session
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
    except ImportError:
        raise UsageError(
            "signed S3 requests need botocore: pip install 'ccfcache[s3]' (or set "
            "CCFCACHE_S3_ANONYMOUS=1 to read a public bucket without the AWS credentials)"
        ) from None
    session = botocore.session.Session()
    credentials = session.get_credentials()
    if credentials is None:
        raise UsageError("AWS_PROFILE/AWS_ACCESS_KEY_ID is set but botocore finds no "
                         "credentials; fix them or set CCFCACHE_S3_ANONYMOUS=1")
    region = region or session.get_config_variable("region") or "us-east-1"

    def sign(request: httpx.Request) -> None:
        headers = {k: v for k, v in request.headers.items() if k.lower() in _SIGNED_HEADERS}
        aws = AWSRequest(method=request.method, url=str(request.url), headers=headers)
        S3SigV4Auth(credentials.get_frozen_credentials(), "s3", region).add_auth(aws)
        for key in ("Authorization", "X-Amz-Date", "X-Amz-Content-SHA256",
                    "X-Amz-Security-Token"):
            if key in aws.headers:
                request.headers[key] = aws.headers[key]

    return sign


class S3Transport(HttpTransport):
    """Objects under one prefix of an S3 bucket (the reads are HttpTransport's ranged GETs)."""

    def __init__(self, url: str, *, endpoint: str | None = None, timeout: float = 30.0,
                 retries: int = 4, backoff: float = 0.5, pool: int = 16,
                 host_connections: int | None = None, page_size: int = 1000) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}"
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        self.base = bucket_url(self.bucket, endpoint, region)
        self.page_size = page_size
        self.http = HttpClient(self.base, timeout=timeout, pool=pool,
                               policy=Policy(retries=retries, backoff=backoff),
                               host_connections=host_connections)
        self.policy = self.http.policy
        self.signed = False
        signer = make_signer(region)
        if signer is not None:
            self.http.add_request_hook(signer)
            self.signed = True

    def file_url(self, name: str) -> str:
        return self.base + quote(self.prefix + name, safe="/-_.~")

    def listing(self, known: ListingValidators | None = None) -> Listing | NotModified:
        """Every object under the prefix, a page of ListObjectsV2 at a time."""
        listing = Listing(source=self.url)
        token: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            query = {"list-type": "2", "prefix": self.prefix, "delimiter": "/",
                     "max-keys": str(self.page_size)}
            if token is not None:
                query["continuation-token"] = token
            page_url = self.base + "?" + urlencode(query, quote_via=quote)
            what = f"listing {self.url}"
            try:
                with self.http.request("GET", page_url, {}, what=what) as response:
                    if response.status_code != 200:
                        raise ListingError(f"{what}: HTTP {response.status_code} from "
                                           f"{self.base}{self._hint(response.status_code)}")
                    body = self.http.read_capped(response, MAX_PAGE_BYTES, what, page_url)
            except FetchError as exc:
                raise ListingError(str(exc)) from exc
            truncated, token = parse_list_page(body, self.prefix, self.url, listing)
            if not truncated:
                return listing
            if token is None or token in seen:
                raise ListingError(f"listing {self.url}: the S3 server gave no new "
                                   "continuation token for a truncated page")
            seen.add(token)
        raise ListingError(f"listing {self.url}: more than {MAX_PAGES} pages; refused")

    def _hint(self, status: int) -> str:
        if status != 403:
            return ""
        if self.signed:
            return " (access denied for these AWS credentials)"
        return (" (access denied: a private bucket needs AWS credentials and "
                "pip install 'ccfcache[s3]')")
