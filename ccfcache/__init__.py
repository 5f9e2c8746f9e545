"""ccfcache: XMM-Newton calibration files (CCF) on demand, from a lazy content-addressed cache.

    >>> from ccfcache import Cache
    >>> cache = Cache()                       # $CCFCACHE_DIR or the user cache folder
    >>> cache.path("XRT3_XAREAEF_0012.CCF")   # fetched on first use

Every exception a caller can meet and every result type `Cache` returns is importable from
here. The exceptions are imported at once (they are small); `Cache` and the result types on
first use, so that the warm `ccfcache path` answer, which needs none of them, starts fast.
"""

from __future__ import annotations

from .errors import (
    CacheError,
    CcfCacheError,
    ChangedOnServerError,
    FetchError,
    InvalidCif,
    InvalidDate,
    InvalidHeader,
    InvalidName,
    ListingError,
    OdfError,
    OfflineError,
    SelectionError,
    TransferError,
    UnknownConstituent,
    UsageError,
)
from .version import __version__

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (4 ms)
if TYPE_CHECKING:
    from .build import CifResult
    from .cache import Cache
    from .cifplan import CifPlan
    from .config import Settings
    from .doctor import DoctorReport
    from .exact import ExactFetch, Unserved
    from .init import InitSummary
    from .mif import MifSeeded, MifWritten
    from .progress import Progress
    from .prune import PrunePlan, Removal
    from .rows import CacheStats, CifEntry, CifRecord, ConstituentStatus, Version
    from .sync import SyncReport
    from .verify import Problem, VerifyReport

# name -> module that defines it, imported on first use
_LAZY = {
    "Cache": "cache",
    "CacheStats": "rows",
    "CifEntry": "rows",
    "CifPlan": "cifplan",
    "CifRecord": "rows",
    "CifResult": "build",
    "ConstituentStatus": "rows",
    "DoctorReport": "doctor",
    "ExactFetch": "exact",
    "InitSummary": "init",
    "MifSeeded": "mif",
    "MifWritten": "mif",
    "Problem": "verify",
    "Progress": "progress",
    "PrunePlan": "prune",
    "Removal": "prune",
    "Settings": "config",
    "Selected": "cache",
    "SyncReport": "sync",
    "Unserved": "exact",
    "Version": "rows",
    "VerifyReport": "verify",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ccfcache' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Cache",
    "CacheError",
    "CacheStats",
    "CcfCacheError",
    "ChangedOnServerError",
    "CifEntry",
    "CifPlan",
    "CifRecord",
    "CifResult",
    "ConstituentStatus",
    "DoctorReport",
    "ExactFetch",
    "FetchError",
    "InitSummary",
    "InvalidCif",
    "InvalidDate",
    "InvalidHeader",
    "InvalidName",
    "ListingError",
    "MifSeeded",
    "MifWritten",
    "OdfError",
    "OfflineError",
    "Problem",
    "Progress",
    "PrunePlan",
    "Removal",
    "Selected",
    "SelectionError",
    "Settings",
    "SyncReport",
    "TransferError",
    "UnknownConstituent",
    "Unserved",
    "UsageError",
    "VerifyReport",
    "Version",
    "__version__",
]
