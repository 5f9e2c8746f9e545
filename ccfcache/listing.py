"""Turn a source's listing (an HTML index page, or a local mirror folder) into constituent entries.

Only the links are trusted, not the layout. `detect_format` names the server family from the
page (Apache with or without FancyIndexing, nginx, lighttpd, Caddy, IIS, python's http.server,
or "generic"); the format only says where a row's date and size are, the parse that follows is
the same link collector for all. A link becomes an entry only if it points at a constituent
name in the listed folder itself: a bare name, `./NAME`, an absolute path into the folder or a
same-host URL of it (`_link_name`); sizes and dates shown on the same row are kept as hints.
Sub-folders, the parent folder and sorting links are ignored; every other link (another host,
another folder, `..`, a query) is recorded in `rejected`, never used as a path.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import SplitResult, unquote, urlsplit

from .dates import normalise_date
from .errors import InvalidDate, InvalidName, ListingError
from .names import parse_name_once

MAX_LISTING_CHARS = 32 * 1024 * 1024  # a bigger "listing" is refused (ESA's is ~0.4 MB)
_MAX_ROW_CHARS = 1024  # text kept after a link to find its date and size
_FEED_CHARS = 1 << 20  # html.parser is fed this much at a time
MAX_FILE_SIZE = (1 << 63) - 1  # a row showing more is rejected (SQLite's integer limit)
MAX_REJECTED_CHARS = 200  # rejected hrefs are recorded truncated to this length

_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
_ISO_RE = re.compile(r"(?<!\d)(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}(?::\d{2})?)(?!\d)")
_APACHE_RE = re.compile(  # Apache 2.2 / nginx: 11-Nov-2014 06:00
    r"(?<!\d)(\d{1,2})-(" + "|".join(_MONTHS) + r")-(\d{4}) (\d{2}:\d{2}(?::\d{2})?)(?!\d)",
    re.IGNORECASE,
)
_LIGHTTPD_RE = re.compile(  # lighttpd: 2013-Jun-17 14:12:00
    r"(?<!\d)(\d{4})-(" + "|".join(_MONTHS) + r")-(\d{2}) (\d{2}:\d{2}(?::\d{2})?)(?!\d)",
    re.IGNORECASE,
)
_US_RE = re.compile(  # IIS (en-US): 6/17/2013  2:12 PM
    r"(?<!\d)(\d{1,2})/(\d{1,2})/(\d{4}) +(\d{1,2}):(\d{2})(?::(\d{2}))? *([AP]M)?(?![\w])",
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
_BR_RE = re.compile(r"<br\s*/?>", re.IGNORECASE)
_UNCLOSED_TAG_RE = re.compile(r"<[^<>]*(?:<|\Z)")  # a '<' not closed before the next '<'
_HTML_START_RE = re.compile(r"\A\s*(?:<!DOCTYPE[^>]*>\s*|<!--.*?-->\s*)*<html[\s>]", re.I | re.S)


@dataclass(frozen=True, slots=True)  # 100,000 of them are held through a first sync
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


def parse_listed_size(text: str) -> tuple[int | None, int | None]:
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


def parse_row_date(text: str, *, us_dates: bool = False) -> tuple[str | None, int]:
    """(normalised date, end offset in text) of the first listing date in `text`.

    ISO (Apache 2.4, Caddy), `17-Jun-2013` (Apache 2.2, nginx) and `2013-Jun-17` (lighttpd)
    are always read; `6/17/2013 2:12 PM` only with `us_dates` (IIS), as it could be day-first.
    """
    found: list[tuple[int, str, int]] = []  # (start, candidate, end)
    for pattern in (_ISO_RE, _APACHE_RE, _LIGHTTPD_RE, *((_US_RE,) if us_dates else ())):
        match = pattern.search(text)
        if match is None:
            continue
        if pattern is _ISO_RE:
            candidate = f"{match[1]}T{match[2]}"
        elif pattern is _APACHE_RE:
            month = _MONTHS.index(match[2].capitalize()) + 1
            candidate = f"{match[3]}-{month:02d}-{int(match[1]):02d}T{match[4]}"
        elif pattern is _LIGHTTPD_RE:
            month = _MONTHS.index(match[2].capitalize()) + 1
            candidate = f"{match[1]}-{month:02d}-{match[3]}T{match[4]}"
        else:
            hour = int(match[4])
            if match[7]:
                if not 1 <= hour <= 12:
                    continue
                hour = hour % 12 + (12 if match[7].upper() == "PM" else 0)
            seconds = match[6] or "00"
            candidate = (f"{match[3]}-{int(match[1]):02d}-{int(match[2]):02d}T"
                         f"{hour:02d}:{match[5]}:{seconds}")
        found.append((match.start(), candidate, match.end()))
    for _, candidate, end in sorted(found):
        try:
            return normalise_date(candidate), end
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


@dataclass(frozen=True)
class ListingFormat:
    """Where one server family writes a link's date and size (the parse is the same for all)."""

    name: str
    hints_before_link: bool = False  # IIS: "6/17/2013  2:12 PM   5242880 <A HREF=...>"
    br_ends_row: bool = False  # IIS: rows are separated by <br>, not newlines or <tr>
    keep_cells: bool = False  # Caddy: the exact size is an attribute of a <td> (data-size)
    us_dates: bool = False  # month/day/year dates (IIS, en-US)


FORMATS = {
    fmt.name: fmt
    for fmt in (
        ListingFormat("apache"),  # FancyIndexing: <table> (2.4) or <pre> (2.2)
        ListingFormat("apache-plain"),  # no FancyIndexing: a <ul> of names, no dates or sizes
        ListingFormat("nginx"),  # <pre>, "17-Jun-2013 14:12    5242880" after each link
        ListingFormat("lighttpd"),  # <table>, "2013-Jun-17 14:12:00" and "5.0M" cells
        ListingFormat("caddy", keep_cells=True),  # ./NAME links, data-size, <time datetime>
        ListingFormat("iis", hints_before_link=True, br_ends_row=True, us_dates=True),
        ListingFormat("python"),  # http.server: a <ul> of names, no dates or sizes
        ListingFormat("generic"),
    )
}
_FORMAT_SIGNS = (  # (format, pattern in the page's first and last 4 KB), first match wins
    ("lighttpd", re.compile(r'<div class="foot">lighttpd|summary="Directory Listing"', re.I)),
    ("caddy", re.compile(r'data-size="\d|href="https://caddyserver\.com"', re.I)),
    ("iis", re.compile(r"\[To Parent Directory\]|&lt;dir&gt;", re.I)),
    ("python", re.compile(r"<title>Directory listing for ", re.I)),
    ("apache", re.compile(r'href="\?C=[NMSD];O=[AD]"|<address>Apache', re.I)),
    ("nginx", re.compile(r'<hr><pre><a href="\.\./">\.\./</a>|<center>nginx', re.I)),
    ("apache-plain", re.compile(r"<h1>Index of .*</h1>\s*<ul>", re.I)),
)


def detect_format(html: str) -> ListingFormat:
    """The server family that wrote an index page, from signs in its head and tail."""
    probe = html[:4096] + html[-4096:]
    for name, sign in _FORMAT_SIGNS:
        if sign.search(probe):
            return FORMATS[name]
    return FORMATS["generic"]


@dataclass(slots=True)
class _Link:
    href: str
    text: str = ""  # the link's own text
    after: str = ""  # text after the link on the same row
    before: str = ""  # text before the link on the same row (kept for IIS only)
    size_attr: str | None = None  # a data-size="N" on the row after the link (Caddy)
    date_attr: str | None = None  # a <time datetime="..."> on the row after the link (Caddy)


class _LinkCollector(HTMLParser):
    """Collect every link with its text and the text (and a few attributes) around it."""

    def __init__(self, *, keep_before: bool = False) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[_Link] = []
        self.tags = 0
        self._keep_before = keep_before
        self._line = ""  # text since the row began (only with keep_before)
        self._in_row = False  # inside a <tr>: the row ends at </tr>, else at a newline
        self._in_anchor = False
        self._current: _Link | None = None  # the link whose row text is being collected

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags += 1
        if tag == "tr":
            self._in_row = True
            self._current = None
            self._line = ""
        elif tag == "a":
            href = next(
                (value for key, value in attrs if key == "href" and value is not None), None
            )
            self._current = None
            self._in_anchor = href is not None
            if href is not None:
                self._current = _Link(href, before=self._line[-_MAX_ROW_CHARS:])
                self.links.append(self._current)
        elif self._current is not None and not self._in_anchor:
            for key, value in attrs:
                if key == "data-size" and value is not None:
                    self._current.size_attr = value[:32]
                elif key == "datetime" and tag == "time" and value is not None:
                    self._current.date_attr = value[:64]

    def handle_endtag(self, tag: str) -> None:
        self.tags += 1
        if tag == "a":
            self._in_anchor = False
        elif tag in ("tr", "table", "pre", "body", "ul", "ol"):
            self._in_row = False
            self._current = None
            self._in_anchor = False
            self._line = ""

    def handle_data(self, data: str) -> None:
        if self._keep_before and not self._in_anchor:
            line = self._line + data
            if "\n" in data and not self._in_row:
                line = line.rpartition("\n")[2]
            self._line = line[-_MAX_ROW_CHARS:]
        current = self._current
        if current is None:
            return
        if self._in_anchor:
            if len(current.text) < _MAX_ROW_CHARS:  # bounded: no quadratic growth
                current.text += data[:_MAX_ROW_CHARS]
            return
        if not self._in_row and "\n" in data:
            current.after += data.split("\n", 1)[0][:_MAX_ROW_CHARS]
            self._current = None
            return
        if len(current.after) < _MAX_ROW_CHARS:
            current.after += data[:_MAX_ROW_CHARS]


def _split(url: str) -> SplitResult | None:
    """`urlsplit(url)`, or None for what it refuses (an unbalanced '[' or ']' in a host)."""
    try:
        return urlsplit(url)
    except ValueError:
        return None


def _ignored(href: str, text: str) -> bool:
    """True for links that are silently skipped: sub-folders, the parent folder, sorting."""
    stripped = href.strip()
    if not stripped or stripped[0] in "?#" or text.strip().lower() == "parent directory":
        return True
    decoded = unquote(stripped)
    if decoded.endswith("/") or decoded in (".", ".."):
        return True  # a sub-folder, the parent folder (Caddy writes '..') or the site root
    parts = _split(decoded)
    if parts is not None and parts.netloc and not parts.path and not parts.query:
        return True  # a web site ("Served with Caddy"), not a file
    return False


def _bare_name(text: str) -> str | None:
    """`text` if it is a bare file name (no path, scheme, '..'), else None."""
    if not text or any(bad in text for bad in ("/", "\\", "..", "\0", ":")):
        return None
    return text


def _link_name(href: str, source: str) -> str | None:
    """The file name (decoded, as the server spells it) a link points at, if it points into the
    listed folder itself; None for anything else (another host, folder or scheme, a query).

    Accepted: `NAME`, `./NAME`, `/FOLDER/NAME` and `scheme://same-host/FOLDER/NAME`, where
    FOLDER is the source URL's path.
    """
    raw = href.strip()
    if any(ch in raw for ch in "\\\0?#") or any(ord(ch) < 32 for ch in raw):
        return None
    parts = _split(raw)
    if parts is None:
        return None
    absolute = bool(parts.scheme or parts.netloc or raw.startswith("/"))
    if absolute:
        base = urlsplit(source)
        if (parts.scheme or parts.netloc) and (
            parts.scheme.lower() != base.scheme.lower()
            or parts.netloc.lower() != base.netloc.lower()
        ):
            return None
        folder = unquote(base.path.rpartition("/")[0]) + "/"
        path = unquote(parts.path)
        if not path.startswith(folder):
            return None
        return _bare_name(path[len(folder):])
    path = unquote(raw)
    return _bare_name(path[2:] if path.startswith("./") else path)


def _row_hints(link: _Link, fmt: ListingFormat) -> tuple[int | None, int | None, str | None]:
    """(exact size, approximate size, mtime) shown with a link, as its format writes them."""
    text = link.before if fmt.hints_before_link else link.after
    mtime, date_end = parse_row_date(text, us_dates=fmt.us_dates)
    if link.date_attr is not None:
        mtime = parse_row_date(link.date_attr)[0] or mtime
    if link.size_attr is not None and link.size_attr.isascii() and link.size_attr.isdigit():
        exact = int(link.size_attr)
        return exact, exact, mtime
    size, size_hint = parse_listed_size(text[date_end:])
    return size, size_hint, mtime


def parse_html_listing(html: str, source: str, fmt: ListingFormat | None = None) -> Listing:
    """Parse an HTML index page into a Listing; raise ListingError for garbage or a cut-off page.

    `fmt` is found with `detect_format` when not given. A page without any constituent link
    is returned as an empty Listing: the caller decides whether that is an error for its source.
    """
    if not isinstance(html, str):
        raise ListingError(f"{source}: listing is not text")
    if len(html) > MAX_LISTING_CHARS:
        raise ListingError(f"{source}: listing is too large ({len(html)} characters)")
    if not html.strip():
        raise ListingError(f"{source}: listing is empty")
    if "\0" in html:
        raise ListingError(f"{source}: listing is not an HTML page (binary data)")
    fmt = fmt or detect_format(html)
    collector = _LinkCollector(keep_before=fmt.hints_before_link)
    page = _defuse(html)  # the page itself, unless it holds unclosed tags
    listing = Listing(source=source)
    inert_tags = 0
    try:
        # fed a slice at a time, each cut before a '<' (after _defuse a tag never holds one,
        # so no tag is cut): html.parser keeps only what it has not parsed yet, the inert
        # tags are stripped from the slice alone, and the links of the rows completed are
        # turned into entries and dropped (a 23 MB page of 100,000 rows was held whole,
        # twice, with every link, until its last row)
        start = 0
        while start < len(page):
            end = start + _FEED_CHARS
            if end < len(page):
                cut = page.rfind("<", start + 1, end)
                if cut <= start:  # a tag (or text) longer than a slice: up to the next tag
                    cut = page.find("<", end)
                end = cut if cut > start else len(page)
            piece = page[start:end]
            if fmt.br_ends_row:
                piece = _BR_RE.sub("\n", piece)
            if not fmt.keep_cells:
                piece, stripped = _INERT_TAGS_RE.subn(" ", piece)
                inert_tags += stripped
            collector.feed(piece)
            # every link but the last is complete (a link's row ends at the next link)
            _add_links(listing, collector.links[:-1], source, fmt)
            del collector.links[:-1]
            start = end
        collector.close()
    except Exception as exc:  # html.parser may raise AssertionError etc. on odd markup
        raise ListingError(
            f"{source}: listing cannot be parsed as HTML ({type(exc).__name__})"
        ) from None
    if collector.tags + inert_tags == 0:
        raise ListingError(f"{source}: listing is not an HTML page (no tags)")
    if looks_truncated(html):
        raise ListingError(f"{source}: listing is truncated (no closing </html>)")
    _add_links(listing, collector.links, source, fmt)
    return listing


def _add_links(listing: Listing, links: list[_Link], source: str, fmt: ListingFormat) -> None:
    """Turn collected links into the listing's entries (in page order) or rejected names."""
    for link in links:
        if _ignored(link.href, link.text):
            continue
        bare = _link_name(link.href, source)
        try:
            name = parse_name_once(bare).name if bare is not None else None
        except InvalidName:
            name = None
        if name is None or bare is None:
            listing.rejected.append(unquote(link.href.strip())[:MAX_REJECTED_CHARS])
            continue
        size, size_hint, mtime = _row_hints(link, fmt)
        if any(value is not None and value > MAX_FILE_SIZE for value in (size, size_hint)):
            listing.rejected.append(bare[:MAX_REJECTED_CHARS])  # an impossible size: this row
            continue
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
            name = parse_name_once(item.name).name
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
