"""What a transport is: a place that lists constituents and yields byte ranges of them.

    listing(known)                   -> Listing, or NOT_MODIFIED when `known` still holds
    read_head(name)                  -> Head (the first bytes through the header END)
    open_range(name, start, since)   -> RangeStream (bytes from `start`, or the whole file
                                        from 0 when the file no longer matches `since`)

Transports only move bytes. Partial files, their validators and publishing belong to the
store (`store.Partial`); resuming, size caps and rate limits to the download loop
(`download.py`); retries and the waits between them to `retry.py`. This module holds the
shared types and needs no network library.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import FetchError, InvalidHeader
from .headers import header_end as _strict_header_end
from .listing import MAX_FILE_SIZE, Listing
from .retry import Policy

MAX_SIZE = MAX_FILE_SIZE  # larger sizes (a listing row, a Content-Range) are refused


@dataclass(frozen=True)
class Validators:
    """What a server says identifies one state of a file: its ETag, its Last-Modified (as
    the server wrote it) and its size. A resumed download must carry the same ones."""

    etag: str | None = None
    last_modified: str | None = None
    size: int | None = None

    def if_range(self) -> str | None:
        """The value for If-Range: the ETag when strong, else the Last-Modified date."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified or None

    def same_file(self, other: Validators) -> bool:
        """True when `other` describes the same state of the file as far as both say: equal
        sizes, and the same ETag (or, without ETags, the same Last-Modified). Without any
        validator in common nothing proves it: False."""
        if self.size is not None and other.size is not None and self.size != other.size:
            return False
        if self.etag and other.etag:
            return self.etag == other.etag
        if self.last_modified and other.last_modified:
            return self.last_modified == other.last_modified
        return False

    def as_dict(self) -> dict[str, Any]:
        return {"etag": self.etag, "last_modified": self.last_modified, "size": self.size}


@dataclass(frozen=True)
class Head:
    """The first bytes of a constituent (through its header END) and what the server said."""

    data: bytes
    size: int
    etag: str | None
    last_modified: str | None  # ISO 'YYYY-MM-DDThh:mm:ss' (as the index keeps it)


class RangeStream(Protocol):
    """An open response body: bytes of one file from `start` on."""

    url: str  # where the bytes come from (for messages)
    start: int  # offset of the first byte (0 when the server sent the whole file)
    validators: Validators  # the file's state as the server describes it now

    def chunks(self) -> Iterator[bytes]:
        """The body as it arrives; a cut raises TransferError (retryable), others FetchError."""
        ...

    def close(self) -> None: ...


class RangeNotSatisfiable(FetchError):
    """The file holds fewer bytes than the range asked for (HTTP 416)."""


class NotModified:
    """A listing that did not change since the validators given (HTTP 304)."""

    def __repr__(self) -> str:
        return "NOT_MODIFIED"


NOT_MODIFIED = NotModified()


@dataclass(frozen=True)
class ListingValidators:
    """What a listing response said about itself, to ask next time whether it changed."""

    etag: str | None = None
    last_modified: str | None = None


class Transport(Protocol):
    """A place that serves constituents (an HTTP folder, a local folder, an S3 prefix)."""

    url: str
    policy: Policy  # how its requests and downloads are retried

    def listing(self, known: ListingValidators | None = None) -> Listing | NotModified:
        """The entries offered; NOT_MODIFIED when `known` still describes the listing."""
        ...

    def read_head(self, name: str) -> Head: ...

    def open_range(self, name: str, start: int, since: Validators | None) -> RangeStream:
        """The file's bytes from `start`, when it is still the file `since` describes;
        otherwise (or with start 0) the whole file, with `stream.start == 0`."""
        ...

    def close(self) -> None: ...


def header_end(data: bytes) -> int | None:
    """Where the header ends; bytes that are not FITS end the read (parsed later, reported)."""
    try:
        return _strict_header_end(data)
    except InvalidHeader:
        return len(data)


def checked_size(value: int | None, what: str) -> int | None:
    """`value` when it is a plausible file size; a size of 2^63 or more raises ValueError."""
    if value is not None and not 0 <= value <= MAX_SIZE:
        raise ValueError(f"{what}: impossible size {str(value)[:30]}")
    return value
