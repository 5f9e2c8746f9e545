"""Turn a source's listing (an HTML index page, or a local mirror folder) into constituent entries.

Only the links are trusted, not the layout: Apache's `<table>` autoindex, the older `<pre>`
page and similar pages all work. A link becomes an entry only if its decoded target is a bare
constituent name (see `names.parse_name`); sizes and dates shown on the same row are kept as
hints. Sub-folders, the parent folder and sorting links are ignored; every other link that is
not a constituent is recorded in `rejected`, never used as a path.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

from .dates import normalise_date
from .errors import InvalidDate, InvalidName, ListingError
from .names import parse_name

MAX_LISTING_CHARS = 32 * 1024 * 1024  # a bigger "listing" is refused (ESA's is ~0.4 MB)
_MAX_ROW_CHARS = 1024  # text kept after a link to find its date and size
MAX_REJECTED_CHARS = 200  # rejected hrefs are recorded truncated to this length

_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
_ISO_RE = re.compile(r"(?<!\d)(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}(?::\d{2})?)(?!\d)")
_APACHE_RE = re.compile(  # Apache 2.2 / nginx: 11-Nov-2014 06:00
    r"(?<!\d)(\d{1,2})-(" + "|".join(_MONTHS) + r")-(\d{4}) (\d{2}:\d{2}(?::\d{2})?)(?!\d)",
    re.IGNORECASE,
)
_SIZE_RE = re.compile(r"(?<!\S)(\d{1,15}(?:\.\d{1,3})?)([KMGTP]?)(?:i?B)?(?!\S)", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}
# Tags that carry nothing the link collector uses (cells, images, text styling): removed before
# html.parser sees the page, which makes it 3x faster on an Apache table (ESA's page has ~8
# tags a row). Only whole tags without '<' or '>' inside quotes match; text is unchanged.
_INERT_TAGS_RE = re.compile(
    r"</?(?:td|th|img|font|span|div|hr|br|b|i|em|strong|tt|code|small|big|center|thead"
    r"|tbody|tfoot|col|colgroup)\b(?:[^<>\"']|\"[^\"<>]*\"|'[^'<>]*')*>",
    re.IGNORECASE,
)
_UNCLOSED_TAG_RE = re.compile(r"<[^<>]*(?:<|\Z)")  # a '<' not closed before the next '<'
_HTML_START_RE = re.compile(r"\A\s*(?:<!DOCTYPE[^>]*>\s*|<!--.*?-->\s*)*<html[\s>]", re.I | re.S)


@dataclass(frozen=True)
class ListingEntry:
    """One constituent offered by a source."""

    name: str  # canonical upper-case name
    href: str  # the file name as the source spells it (a bare name, safe to join to the URL)
    size: int | None = None  # exact size in bytes, when known
    size_hint: int | None = None  # approximate size (Apache's rounded '82K'), in bytes
    mtime: str | None = None  # 'YYYY-MM-DDThh:mm:ss' (seconds 00 when shown to the minute)


@dataclass
class Listing:
    """What a source offers: constituent entries by canonical name, and rejected link names."""

    source: str
    entries: dict[str, ListingEntry] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)
    etag: str | None = None  # the listing response's own validators (conditional requests)
    last_modified: str | None = None


def parse_size(text: str) -> tuple[int | None, int | None]:
    """(exact size, approximate size) in bytes from a listing's size column ('82K', '512')."""
    match = _SIZE_RE.search(text)
    if match is None:
        return None, None
    number, unit = match[1], match[2].upper()
    if not unit:
        if "." in number:
            return None, round(float(number))
        return int(number), int(number)
    return None, round(float(number) * _UNITS[unit])


def parse_row_date(text: str) -> tuple[str | None, int]:
    """(normalised date, end offset in text) of the first listing date in `text`."""
    for match in (_ISO_RE.search(text), _APACHE_RE.search(text)):
        if match is None:
            continue
        if match.re is _ISO_RE:
            candidate = f"{match[1]}T{match[2]}"
        else:
            month = _MONTHS.index(match[2].capitalize()) + 1
            candidate = f"{match[3]}-{month:02d}-{int(match[1]):02d}T{match[4]}"
        try:
            return normalise_date(candidate), match.end()
        except InvalidDate:
            continue
    return None, 0


def _defuse(html: str) -> str:
    """Escape every '<' that is not closed by a '>' before the next '<'.

    html.parser takes quadratic time (minutes) on runs of unterminated tags such as
    `<a href=<a href=...`; after this, tags never overlap and parsing stays linear.
    Well-formed listings are unchanged.
    """
    if _UNCLOSED_TAG_RE.search(html) is None:  # the usual page: one C-speed scan
        return html
    bad: list[int] = []
    pending = -1
    for match in re.finditer(r"[<>]", html):
        if match[0] == ">":
            pending = -1
            continue
        if pending >= 0:
            bad.append(pending)
        pending = match.start()
    if pending >= 0:
        bad.append(pending)
    if not bad:
        return html
    parts: list[str] = []
    previous = 0
    for index in bad:
        parts += [html[previous:index], "&lt;"]
        previous = index + 1
    parts.append(html[previous:])
    return "".join(parts)


def looks_truncated(html: str) -> bool:
    """True when the page clearly starts as an HTML document but has no closing `</html>`."""
    head = html[:4096]
    return bool(_HTML_START_RE.match(head)) and re.search(r"</html\s*>", html, re.I) is None


class _LinkCollector(HTMLParser):
    """Collect (href, link text, text following the link on the same row) from a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[list[str]] = []  # [href, link text, trailing row text]
        self.tags = 0
        self._in_row = False  # inside a <tr>: the row ends at </tr>, else at a newline
        self._in_anchor = False
        self._current: list[str] | None = None  # the link whose row text is being collected

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags += 1
        if tag == "tr":
            self._in_row = True
            self._current = None
        elif tag == "a":
            href = next(
                (value for key, value in attrs if key == "href" and value is not None), None
            )
            self._current = None
            self._in_anchor = href is not None
            if href is not None:
                self._current = [href, "", ""]
                self.links.append(self._current)

    def handle_endtag(self, tag: str) -> None:
        self.tags += 1
        if tag == "a":
            self._in_anchor = False
        elif tag in ("tr", "table", "pre", "body", "ul", "ol"):
            self._in_row = False
            self._current = None
            self._in_anchor = False

    def handle_data(self, data: str) -> None:
        if self._current is None:
            return
        slot = 1 if self._in_anchor else 2
        if slot == 2 and not self._in_row and "\n" in data:
            data = data.split("\n", 1)[0]
            self._current[2] += data[:_MAX_ROW_CHARS]
            self._current = None
            return
        if len(self._current[slot]) < _MAX_ROW_CHARS:  # bounded: no quadratic growth
            self._current[slot] += data[:_MAX_ROW_CHARS]


def _ignored(href: str, text: str) -> bool:
    """True for links that are silently skipped: sub-folders, the parent folder, sorting."""
    stripped = href.strip()
    if not stripped or stripped[0] in "?#" or text.strip().lower() == "parent directory":
        return True
    if unquote(stripped).endswith("/"):
        return True  # a sub-folder, the parent folder or the site root
    return False


def _bare_name(href: str) -> str | None:
    """The decoded href if it is a bare relative file name (no path, scheme, '..'), else None."""
    decoded = unquote(href.strip())
    if not decoded or any(bad in decoded for bad in ("/", "\\", "..", "\0", ":")):
        return None
    return decoded


def parse_html_listing(html: str, source: str) -> Listing:
    """Parse an HTML index page into a Listing; raise ListingError for garbage or a cut-off page.

    A page without any constituent link is returned as an empty Listing: the caller decides
    whether that is an error for its source.
    """
    if not isinstance(html, str):
        raise ListingError(f"{source}: listing is not text")
    if len(html) > MAX_LISTING_CHARS:
        raise ListingError(f"{source}: listing is too large ({len(html)} characters)")
    if not html.strip():
        raise ListingError(f"{source}: listing is empty")
    if "\0" in html:
        raise ListingError(f"{source}: listing is not an HTML page (binary data)")
    collector = _LinkCollector()
    page, inert_tags = _INERT_TAGS_RE.subn("", _defuse(html))
    try:
        collector.feed(page)
        collector.close()
    except Exception as exc:  # html.parser may raise AssertionError etc. on odd markup
        raise ListingError(
            f"{source}: listing cannot be parsed as HTML ({type(exc).__name__})"
        ) from None
    if collector.tags + inert_tags == 0:
        raise ListingError(f"{source}: listing is not an HTML page (no tags)")
    if looks_truncated(html):
        raise ListingError(f"{source}: listing is truncated (no closing </html>)")

    listing = Listing(source=source)
    for href, text, row in collector.links:
        if _ignored(href, text):
            continue
        bare = _bare_name(href)
        try:
            name = parse_name(bare).name if bare is not None else None
        except InvalidName:
            name = None
        if name is None or bare is None:
            listing.rejected.append(unquote(href.strip())[:MAX_REJECTED_CHARS])
            continue
        mtime, date_end = parse_row_date(row)
        size, size_hint = parse_size(row[date_end:])
        entry = ListingEntry(name=name, href=bare, size=size, size_hint=size_hint, mtime=mtime)
        known = listing.entries.get(name)
        if known is None:
            listing.entries[name] = entry
        elif known.href == bare:  # the same file linked twice (icon and name): merge the hints
            listing.entries[name] = replace(
                known,
                size=known.size if known.size is not None else size,
                size_hint=known.size_hint if known.size_hint is not None else size_hint,
                mtime=known.mtime or mtime,
            )
        else:  # a case variant of a name already listed: keep the first
            listing.rejected.append(bare)
    return listing


def _iso_mtime(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def list_directory(path: Path, source: str) -> Listing:
    """A local folder (e.g. an rsync mirror) as a Listing, with exact sizes and mtimes.

    Sub-folders are skipped; other non-constituent files, symlinks leading outside the
    folder, broken links and special files are recorded in `rejected`.
    """
    folder = Path(path)
    try:
        root = folder.resolve(strict=True)
        with os.scandir(root) as scan:
            items = sorted(scan, key=lambda item: item.name)
    except OSError as exc:
        raise ListingError(
            f"{source}: cannot list folder {folder}: {exc.strerror or exc}"
        ) from None

    listing = Listing(source=source)
    for item in items:
        try:
            if item.is_dir(follow_symlinks=False):
                continue
            if item.is_symlink():
                target = Path(item.path).resolve(strict=True)
                if target.parent != root and root not in target.parents:
                    listing.rejected.append(item.name)
                    continue
            info = os.stat(item.path)  # follows a link that stays inside the folder
        except (OSError, RuntimeError):  # broken link, loop, vanished file
            listing.rejected.append(item.name)
            continue
        if stat.S_ISDIR(info.st_mode):
            continue  # a link to a folder inside the mirror
        try:
            name = parse_name(item.name).name
        except InvalidName:
            listing.rejected.append(item.name)
            continue
        if not stat.S_ISREG(info.st_mode) or name in listing.entries:
            listing.rejected.append(item.name)
            continue
        listing.entries[name] = ListingEntry(
            name=name,
            href=item.name,
            size=info.st_size,
            size_hint=info.st_size,
            mtime=_iso_mtime(info.st_mtime),
        )
    return listing
