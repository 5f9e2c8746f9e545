"""Open the transport for a source URL: an HTTP(S) folder (`transport_http`), a local folder
(`transport_local`) or an S3 prefix (`transport_s3`). What a transport can do is defined in
`transport.py`; the download loop that drives one is `download.py`.
"""

from __future__ import annotations

from .errors import ListingError
from .store import SYNC_FILE_RANGE as _SYNC_FILE_RANGE  # noqa: F401 - kept for callers
from .store import Writeback  # noqa: F401 - kept for callers
from .store import write_all as _write_all  # noqa: F401 - kept for callers
from .transport import Head, Transport, header_end  # noqa: F401 - re-exported

Source = Transport  # the older name


def is_local(url: str) -> bool:
    """True for a folder path or file:// URL."""
    return url.startswith("file://") or "://" not in url


def open_source(url: str, *, timeout: float = 30.0, retries: int = 4, backoff: float = 0.5,
                pool: int = 16, host_connections: int | None = None,
                s3_endpoint: str | None = None) -> Transport:
    """The right transport for `url`."""
    if is_local(url):
        from .transport_local import LocalTransport

        return LocalTransport(url)
    if url.startswith("s3://"):
        from .transport_s3 import S3Transport

        return S3Transport(url, endpoint=s3_endpoint, timeout=timeout, retries=retries,
                           backoff=backoff, pool=pool, host_connections=host_connections)
    if not url.startswith(("http://", "https://")):
        raise ListingError(
            f"unsupported source URL (use http(s)://, s3://, file://, a folder or a preset): {url}"
        )
    from .transport_http import HttpTransport

    return HttpTransport(url, timeout=timeout, retries=retries, backoff=backoff, pool=pool,
                         host_connections=host_connections)
