"""ccfcache: XMM-Newton calibration files (CCF) on demand, from a lazy content-addressed cache.

    >>> from ccfcache import Cache
    >>> cache = Cache()                       # $CCFCACHE_DIR or the user cache folder
    >>> cache.path("XRT3_XAREAEF_0012.CCF")   # fetched on first use
"""

from __future__ import annotations

from .errors import (
    CacheError,
    CcfCacheError,
    FetchError,
    InvalidDate,
    InvalidHeader,
    InvalidName,
    ListingError,
    SelectionError,
    UnknownConstituent,
    UsageError,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (4 ms)
if TYPE_CHECKING:
    from .cache import Cache

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # Cache (and through it sqlite-utils) is imported on first use, so that the warm
    # `ccfcache path` answer, which needs none of it, starts fast
    if name == "Cache":
        from .cache import Cache

        return Cache
    raise AttributeError(f"module 'ccfcache' has no attribute {name!r}")

__all__ = [
    "Cache",
    "CacheError",
    "CcfCacheError",
    "FetchError",
    "InvalidDate",
    "InvalidHeader",
    "InvalidName",
    "ListingError",
    "SelectionError",
    "UnknownConstituent",
    "UsageError",
    "__version__",
]
