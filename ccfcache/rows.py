"""The typed rows the index returns (frozen, slotted dataclasses; no SQL, no I/O).

Code reads their fields as attributes (`version.xxh3`). Each row is also a read-only
`Mapping` of its fields, because the pure rule modules (`select`, `cif`) take any mapping: the
same functions serve index rows, CIF rows read from a file and the plain dicts of their tests.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, Self


class Row(Mapping[str, Any]):
    """A read-only mapping view of a dataclass row (field name -> value)."""

    __slots__ = ()
    __dataclass_fields__: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    # get and `in` directly (Mapping's go through __getitem__ and an exception): the CIF rule
    # and writer read ~50 fields a row of every warm build
    def get(self, key: str, default: Any = None) -> Any:
        if key in self.__dataclass_fields__:
            return getattr(self, key)
        return default

    def __contains__(self, key: object) -> bool:
        return key in self.__dataclass_fields__

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dataclass_fields__)

    def __len__(self) -> int:
        return len(self.__dataclass_fields__)

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (for JSON)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_mapping(cls, row: Any) -> Self:
        """Build from a mapping with (at least) every field; extra keys are ignored."""
        names = cls.__dataclass_fields__
        return cls(**{k: row[k] for k in row.keys() if k in names})


@dataclass(frozen=True, slots=True, eq=True)
class Version(Row):
    """One content of a name (a `versions` row): header keywords, identity, hashes once
    fetched; `sources` is the space-joined URLs listing it, when the query asked for them."""

    id: int
    name: str
    size: int
    header_digest: str
    header_size: int | None = None
    telescop: str | None = None
    scope: str | None = None
    typeid: str | None = None
    issue: int | None = None
    valdate: str | None = None
    evaldate: str | None = None
    subdate: str | None = None
    date: str | None = None
    category: str | None = None
    extsequ: str | None = None
    extseqid: str | None = None
    creator: str | None = None
    header_error: str | None = None
    xxh3: str | None = None
    md5: str | None = None
    first_seen: float | None = None
    last_used: float | None = None
    sources: str | None = None
    fetched_source: str | None = None  # the validators its bytes were downloaded under
    fetched_etag: str | None = None
    fetched_last_modified: str | None = None
    fetched_at: float | None = None  # when (never earlier than the download)

    def fetched_under(self) -> FetchedUnder | None:
        """What the server said of the bytes when this content was fetched (None: not
        fetched, or nothing recorded)."""
        if self.xxh3 is None or (self.fetched_at is None and self.fetched_source is None):
            return None
        return FetchedUnder(self.fetched_source, self.fetched_etag,
                            self.fetched_last_modified, self.fetched_at)


@dataclass(frozen=True, slots=True)
class FetchedUnder(Row):
    """The source and validators (ETag, Last-Modified as the server wrote it) a content's
    bytes were downloaded under, and when."""

    source: str | None
    etag: str | None
    last_modified: str | None
    at: float | None


@dataclass(frozen=True, slots=True)
class MountVersion(Version):
    """A version the mount shows, with `served_at`: the server's date of it (Last-Modified,
    else the listing's date; None when no source lists it now)."""

    served_at: str | None = None


@dataclass(frozen=True, slots=True)
class StoredContent(Version):
    """A version whose content is stored (a `blobs` row), with `listed`: some source lists
    that version now."""

    listed: bool = False


@dataclass(frozen=True, slots=True)
class VersionState(Version):
    """A version with `listed` (some source lists it now), `stored` (its content is in the
    blob store) and `withdrawn` (no source lists its name any more)."""

    listed: bool = False
    stored: bool = False
    withdrawn: bool = False


@dataclass(frozen=True, slots=True)
class SeedVersion(Row):
    """A version read from a Master Index File (no header read): its keywords, FSIZE and MD5,
    as `Index.seed_versions` records it."""

    name: str
    size: int
    md5: str
    header_digest: str
    scope: str
    typeid: str
    issue: int | None = None
    telescop: str | None = None
    valdate: str | None = None
    evaldate: str | None = None
    subdate: str | None = None
    date: str | None = None
    category: str | None = None
    extsequ: str | None = None
    extseqid: str | None = None
    creator: str | None = None
    header_size: int = 0


@dataclass(frozen=True, slots=True)
class CifRows(Row):
    """A recorded CIF's id, path, pin and rows (JSON text: name, xxh3, ...)."""

    id: int
    path: str
    pinned: int | None
    rows: str | None


@dataclass(frozen=True, slots=True)
class KnownListing(Row):
    """What the index recorded of one (source, name) listing entry (what sync compares)."""

    source: str
    name: str
    size: int | None
    size_hint: int | None
    mtime: str | None
    version_id: int | None
    header_error: str | None = None  # its version's: an unreadable header is read again
    href: str | None = None  # the link as the listing wrote it (None: the name)


@dataclass(frozen=True, slots=True)
class NameState(Row):
    """A constituent name and when it was withdrawn (None: listed)."""

    name: str
    withdrawn_at: float | None


@dataclass(frozen=True, slots=True)
class ListingSource(Row):
    """A source that lists a version, with the ETag seen at sync and its spelling."""

    source: str
    etag: str | None
    href: str | None = None  # the file name as this source spells it (None: not recorded)


@dataclass(frozen=True, slots=True)
class ConstituentRow(Row):
    """A name with its newest listed version (for `ls`); version fields None when unlisted."""

    name: str
    scope: str | None
    typeid: str | None
    issue: int | None
    withdrawn_at: float | None
    version_id: int | None
    size: int | None
    subdate: str | None
    xxh3: str | None
    header_error: str | None
    sources: int


@dataclass(frozen=True, slots=True)
class IndexCounts(Row):
    """Counts and byte totals over the index (for `stats`)."""

    constituents_listed: int
    constituents_withdrawn: int
    versions_known: int
    contents_stored: int
    bytes_stored: int
    bytes_listed: int
    bytes_served_stored: int  # bytes of listed versions whose content is known


@dataclass(frozen=True, slots=True)
class BlobRecord(Row):
    """A `blobs` row: one stored content."""

    xxh3: str
    size: int


@dataclass(frozen=True, slots=True)
class BlobUse(Row):
    """A stored content and its latest use the index knows (blob or any of its versions)."""

    xxh3: str
    size: int
    used: float


@dataclass(frozen=True, slots=True)
class CifRecord(Row):
    """A `cifs` row: one CIF built, with its rows as JSON text."""

    id: int
    path: str
    obs_date: str | None = None
    analysis_date: str | None = None
    category: str | None = None
    historical: int | None = None
    created_at: float | None = None
    host: str | None = None
    user: str | None = None
    rows: str | None = None
    view_dir: str | None = None
    pinned: int | None = None


@dataclass(frozen=True, slots=True)
class ConstituentStatus(ConstituentRow):
    """A constituent as `Cache.ls` shows it: its newest listed version (fields None when no
    source lists it), how many sources list it, `status` ("listed" or "withdrawn") and
    whether its bytes are `local`."""

    status: str
    local: bool


@dataclass(frozen=True, slots=True)
class CacheStats(Row):
    """What `Cache.stats` counts: constituents, versions, stored contents and bytes."""

    cache_dir: str
    sources: list[str]
    constituents_listed: int
    constituents_withdrawn: int
    versions_known: int
    contents_stored: int
    bytes_stored: int
    bytes_listed: int  # of the listed constituents whose header is read
    bytes_saved_by_dedup: int
    headers_unread: int = 0  # listed, header not read yet (a CIF reads what it needs)


@dataclass(frozen=True, slots=True)
class CifEntry(Row):
    """A recorded CIF as `Cache.cifs` lists it: `rows` counted, `exists` checked now."""

    id: int
    path: str
    obs_date: str | None
    analysis_date: str | None
    category: str | None
    historical: int | None
    created_at: float | None
    host: str | None
    user: str | None
    rows: int
    view_dir: str | None
    pinned: int | None
    exists: bool


@dataclass(frozen=True, slots=True)
class ListingWrite:
    """One listing entry whose header was read, as sync hands it to the index."""

    source: str
    name: str
    size_hint: int | None
    mtime: str | None
    size: int
    etag: str | None
    last_modified: str | None
    fields: Mapping[str, Any]  # the versions-table fields (name, size, header keywords, ...)
    href: str | None = None  # the link as the listing wrote it


@dataclass(frozen=True, slots=True)
class ListingUnread:
    """A listing entry whose header is not read yet (a `listings` row with no version): what
    a sync that stops after the listings records, and what a CIF reads on demand. `scope`,
    `typeid` and `issue` come from the name."""

    source: str
    name: str
    size_hint: int | None
    mtime: str | None
    size: int | None
    href: str | None
    scope: str
    typeid: str
    issue: int


@dataclass(frozen=True, slots=True)
class NewVersion:
    """A version sync inserted: its name and header problem (None when readable)."""

    name: str
    header_error: str | None


__all__ = [
    "BlobRecord", "BlobUse", "CacheStats", "CifEntry", "CifRecord", "ConstituentRow",
    "ConstituentStatus", "CifRows", "FetchedUnder", "IndexCounts", "KnownListing", "ListingSource",
    "ListingUnread", "ListingWrite", "MountVersion", "NameState", "NewVersion", "Row",
    "SeedVersion", "StoredContent", "Version", "VersionState",
]  # fmt: skip
