"""ccfcache: XMM-Newton calibration files (CCF) on demand, from a lazy content-addressed cache.

    >>> from ccfcache import Cache
    >>> cache = Cache()                       # $CCFCACHE_DIR or the user cache folder
    >>> cache.path("XRT3_XAREAEF_0012.CCF")   # fetched on first use
"""

from __future__ import annotations

from .cache import Cache
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

__version__ = "0.1.0"

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
