"""The one exception tree of ccfcache: every error a user can meet, with a one-line message.

    CcfCacheError
    ├── InvalidName          a listing entry or argument that is not a constituent name
    ├── InvalidDate          a date that cannot be parsed
    ├── InvalidHeader        a FITS header that cannot be read or lacks the indexing keywords
    ├── ListingError         a source listing that cannot be fetched or parsed, or looks broken
    ├── FetchError           a download that failed (network, HTTP status, size or hash mismatch)
    │   ├── TransferError    a transfer cut short (reset, timeout, too slow): worth another try
    │   └── OfflineError     a download or sync refused because of --offline / CCFCACHE_OFFLINE
    ├── UnknownConstituent   a name the index does not know
    ├── CacheError           the cache folder or its index cannot be used (permissions, version)
    ├── SelectionError       a CIF that cannot be built (nothing selected, files missing)
    └── UsageError           wrong arguments (unknown cifbuild parameter, bad option value)

Errors from the layers below (httpx, sqlite3, astropy, OSError) are translated where they
arise, with a message that names the file or URL and what to do.
"""

from __future__ import annotations


class CcfCacheError(Exception):
    """Base of every error ccfcache raises on purpose; its str() is a one-line message."""


class InvalidName(CcfCacheError, ValueError):
    """A string that is not a constituent name (SCOPE_TYPEID_IIII.CCF)."""


class InvalidDate(CcfCacheError, ValueError):
    """A date that is not ISO `YYYY-MM-DD[Thh:mm:ss[.fff]]` or `now`."""


class InvalidHeader(CcfCacheError):
    """A FITS primary header that cannot be read, or lacks the indexing keywords."""


class ListingError(CcfCacheError):
    """A source listing that cannot be fetched or parsed, or that looks broken."""


class FetchError(CcfCacheError):
    """A download that failed: network error, HTTP status, size or content mismatch."""


class ChangedOnServerError(FetchError):
    """The server's file is no longer the one the last sync read (another ETag, size or
    header): the next sync must ask for its listing whole."""


class TransferError(FetchError):
    """A transfer cut short (connection reset, timeout, below the minimum rate): retryable."""


class OfflineError(FetchError):
    """Work that needs a server, refused because of --offline / CCFCACHE_OFFLINE=1."""


class UnknownConstituent(CcfCacheError, KeyError):
    """A constituent name the index does not know (run `ccfcache sync` first?)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown constituent"


class CacheError(CcfCacheError):
    """The cache folder or its index cannot be used: permissions, format version, corruption."""


class SelectionError(CcfCacheError):
    """A CIF that cannot be built: nothing selected, or selected files that cannot be had."""


class UsageError(CcfCacheError, ValueError):
    """Wrong arguments: an unknown cifbuild parameter, an option value out of range."""


class InvalidCif(CcfCacheError):
    """A file that is not a CIF: not FITS, no CALINDEX table, or missing columns."""


class OdfError(CcfCacheError):
    """No observation date can be had from an ODF: no folder, no summary, or no date in it."""


def last_resort_message(exc: BaseException) -> str | None:
    """A one-line message (what failed, where, what to do) for an OSError or sqlite3 error that
    no layer translated, so that the CLI never shows a traceback; None for anything else.
    Each such case is a bug to fix where it arose, with a better message."""
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return (f"{exc.strerror or exc}{where}: check the permissions and free space of that "
                "path, then run the command again")
    if type(exc).__module__ == "sqlite3":
        return (f"the cache index failed: {exc}; run `ccfcache doctor` to check and repair it, "
                "then run the command again")
    return None
