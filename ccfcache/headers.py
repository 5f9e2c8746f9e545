"""Read a constituent's indexing keywords (SCOPE, TYPEID, ISSUE, dates...) from its first bytes.

Only the primary header is needed: `header_end` tells how many bytes that is (whole 2880-byte
FITS blocks), `parse_header` turns those bytes into a plain dict, and `read_header_file` does
both for a local file without reading the data that follows. Every problem, whatever the
bytes, is reported as `InvalidHeader` with a one-line message naming the file.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import xxhash

from .dates import normalise_date
from .errors import InvalidDate, InvalidHeader, InvalidName
from .names import ConstituentName, parse_name_once

BLOCK = 2880
CARD = 80
MAX_HEADER_BLOCKS = 100  # a primary header larger than this is refused (~288 kB)
MAX_ISSUE = 9999

_SIMPLE = b"SIMPLE  ="
_NON_ASCII = bytes(range(128)) + b"?" * 128  # bytes.translate table: 0x80-0xFF -> '?'


_END_CARD = b"END     "  # an END card: 'END' then blanks to the end of the keyword field


def header_end(data: bytes, *, max_blocks: int = MAX_HEADER_BLOCKS) -> int | None:
    """Offset just past the block holding the primary header's END card, or None if not in data.

    Raise InvalidHeader if `data` is not FITS, or if no END card appears in the first
    `max_blocks` blocks although `data` holds them.
    """
    start = bytes(data[: len(_SIMPLE)])
    if not _SIMPLE.startswith(start):  # a shorter prefix of 'SIMPLE  =' may still be FITS
        raise InvalidHeader("not a FITS file (does not start with 'SIMPLE  =')")
    limit = min(len(data), max_blocks * BLOCK)
    # bytes.find instead of a Python loop over the cards (a header read tests every card)
    raw = data if isinstance(data, bytes) else bytes(data[:limit])
    offset = raw.find(_END_CARD, 0, limit)
    while 0 <= offset and offset + CARD <= limit:
        if offset % CARD == 0:
            return (offset // BLOCK + 1) * BLOCK
        offset = raw.find(_END_CARD, offset + 1, limit)
    if len(data) >= max_blocks * BLOCK:
        raise InvalidHeader(f"no END card in the first {max_blocks} header blocks")
    return None


def _value(header: Any, key: str) -> Any:
    """The value of `key`, or None when missing, undefined or unparseable-but-empty."""
    if key not in header:
        return None
    value = header[key]  # may raise on an unparsable card: caught by the caller
    if isinstance(value, str | bool | int | float):
        return value
    return None  # astropy's Undefined (a keyword without value), complex numbers...


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "T" if value else "F"
    return str(value).strip()


def _date(value: Any, key: str, where: str, *, required: bool) -> str | None:
    text = _text(value)
    if not text:
        if required:
            raise InvalidHeader(f"{where}: {key} is missing")
        return None
    try:
        return normalise_date(text)
    except InvalidDate:
        raise InvalidHeader(f"{where}: {key} is not an ISO date: {text[:40]!r}") from None


def _issue(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        value = "T" if value else "F"
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 6:
        value = int(value.strip())
    if not isinstance(value, int) or not 0 <= value <= MAX_ISSUE:
        raise InvalidHeader(f"{where}: ISSUE is not an integer 0..{MAX_ISSUE}: {str(value)[:40]!r}")
    return value


_KEYWORDS = (
    "TELESCOP", "SCOPE", "TYPEID", "ISSUE", "VALDATE", "EVALDATE", "SUBDATE", "DATE",
    "CATEGORY", "EXTSEQU", "EXTSEQID", "CREATOR",
)  # fmt: skip


_WANTED = frozenset(_KEYWORDS)


def _indexing_cards(text: str) -> str:
    """Only the cards astropy must parse: the indexing keywords with their CONTINUE cards, and
    END (a real header has ~70 cards; parsing them all was most of a sync's CPU time)."""
    kept = []
    keep_continue = False
    for start in range(0, len(text), 80):
        card = text[start:start + 80]
        keyword = card[:8].rstrip()
        if keyword == "CONTINUE":
            if keep_continue:
                kept.append(card)
            continue
        keep_continue = keyword in _WANTED
        if keep_continue or keyword == "END":
            kept.append(card)
    return "".join(kept)


_INTEGER = re.compile(r"[+-]?[0-9]+")
_REAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([E][+-]?[0-9]+)?")


def _card_value(card: str) -> str | bool | int | float | None:
    """The value of one plain fixed- or free-format card as astropy would give it, or raise
    `_Unusual` for anything else (astropy then parses the header)."""
    if card[8:10] != "= ":
        raise _Unusual
    field = card[10:].lstrip(" ")
    if field.startswith("'"):
        value = _quoted(field).rstrip(" ")
        if value.endswith("&"):
            raise _Unusual  # a long string continued on CONTINUE cards (`_continued`)
        return value
    token = field.split("/", 1)[0].strip(" ")
    if not token:
        return None  # a keyword without a value: astropy's Undefined
    if token in ("T", "F"):
        return token == "T"
    if _INTEGER.fullmatch(token):
        return int(token)
    if _REAL.fullmatch(token):
        return float(token)
    raise _Unusual  # complex numbers, D exponents, lower-case letters...


class _Unusual(Exception):
    """A card `_card_value` leaves to astropy."""


def _quoted(field: str) -> str:
    """The text between the quotes of a string field `'...'` followed by nothing or a
    comment; raise `_Unusual` for anything else (astropy then parses it)."""
    close = field.find("'", 1)
    if close < 0 or field[close + 1 : close + 2] == "'":
        raise _Unusual  # unterminated, or a quote inside ('' is read differently by astropy)
    if close == 1 and "'" in field[2:]:
        raise _Unusual  # astropy reads `''/x'` as the string "'/x", not as '' and a comment
    rest = field[close + 1 :].lstrip(" ")
    if rest and not rest.startswith("/"):
        raise _Unusual
    return field[1:close]


def _continued(card: str, more: list[str]) -> str:
    """The value of a long string: `card`'s string ending in '&', continued on the CONTINUE
    cards `more` (each but the last ending in '&'), joined as astropy joins them: each part
    without its trailing blanks and '&', the whole without trailing blanks. Anything else
    (a quote inside, a part not continued as announced, non-printable text) is `_Unusual`.
    ESA's long EXTSEQID values (a list of extension names) are written this way."""
    if card[8:10] != "= ":
        raise _Unusual
    field = card[10:].lstrip(" ")
    if not field.startswith("'"):
        raise _Unusual  # only a string is continued
    parts = [_quoted(field)]
    for other in more:
        if other[8:10] != "  " or not other[10:11] == "'":
            raise _Unusual
        parts.append(_quoted(other[10:]))
    out = []
    for number, part in enumerate(parts):
        part = part.rstrip(" ")
        last = number == len(parts) - 1
        if not part.isascii() or not part.isprintable() or part.endswith("&") == last:
            raise _Unusual  # every part but the last announces a continuation, the last none
        out.append(part[:-1] if not last else part)
    return "".join(out).rstrip(" ")


def _plain_keywords(text: str) -> dict[str, Any] | None:
    """The indexing keywords read straight from their cards, when every one of them is a plain
    card (a quoted string, an integer, a real, T/F or no value, or a string continued on
    CONTINUE cards), each at most once; None otherwise. A real header's keywords always are:
    astropy's generality cost ~0.7 ms of CPU per header (and ~0.5 s to import it), most of a
    large sync's parsing."""
    values: dict[str, Any] = {}
    length = len(text)
    start = 0
    while start < length:
        card = text[start : start + CARD]
        start += CARD
        keyword = card[:8].rstrip(" ")
        if keyword not in _WANTED:
            if keyword.upper() in _WANTED:
                return None  # a lower-case keyword
            if keyword == "END":
                break
            continue
        if keyword.lower() in values:
            return None  # a repeated keyword: astropy decides which one counts
        more = []  # the CONTINUE cards that follow (astropy joins them to this card)
        while text[start : start + 8] == "CONTINUE":
            more.append(text[start : start + CARD].ljust(CARD))
            start += CARD
        try:
            values[keyword.lower()] = (_continued(card.ljust(CARD), more) if more
                                       else _card_value(card.ljust(CARD)))
        except _Unusual:
            return None
    return {key.lower(): values.get(key.lower()) for key in _KEYWORDS}


def _read_keywords(text: str, where: str) -> dict[str, Any]:
    """The indexing keywords' raw values (None when missing), by lower-case key."""
    plain = _plain_keywords(text)
    return plain if plain is not None else _astropy_keywords(text, where)


def _astropy_keywords(text: str, where: str) -> dict[str, Any]:
    """`_read_keywords` by astropy, for headers whose keyword cards are not all plain."""
    try:
        from astropy.io import fits  # imported lazily: only sync reads headers

        with warnings.catch_warnings():  # astropy warns about odd cards while parsing
            warnings.simplefilter("ignore")
            header = fits.Header.fromstring(_indexing_cards(text))
            # values are parsed lazily: an unparsable card raises here
            return {key.lower(): _value(header, key) for key in _KEYWORDS}
    except Exception as exc:  # astropy raises many types; all mean "unreadable header"
        raise InvalidHeader(f"{where}: unreadable FITS header ({_one_line(exc)})") from None


def _label(name: object) -> str:
    """`name` made fit for a one-line message."""
    text = str(name)
    if not text.isprintable() or len(text) > 200:
        text = repr(text[:200])
    return text


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:120] + "...") if len(text) > 120 else (text or type(exc).__name__)


def parse_header(data: bytes, name: str) -> dict[str, Any]:
    """Parse the primary header in `data` (which holds at least the END block) into a dict.

    Keys: telescop, scope, typeid, issue (int), valdate, evaldate (str or None), subdate,
    date, category, extsequ, extseqid, creator, header_size, header_digest. SCOPE, TYPEID
    and ISSUE fall back to the file `name`; the header wins when both are present.
    """
    where = _label(name)
    try:
        end = header_end(data)
    except InvalidHeader as exc:
        raise InvalidHeader(f"{where}: {exc}") from None
    if end is None:
        raise InvalidHeader(f"{where}: primary header has no END card (truncated?)")
    if len(data) < end:
        raise InvalidHeader(f"{where}: primary header block is truncated ({len(data)} bytes)")
    raw = bytes(data[:end])
    values = _read_keywords(raw.translate(_NON_ASCII).decode("ascii"), where)
    try:
        # not memoised: a first sync parses 100,000 names once each (28 MiB of memo)
        from_name: ConstituentName | None = parse_name_once(Path(str(name)).name)
    except InvalidName:
        from_name = None

    scope = _text(values["scope"]) or (from_name.scope if from_name else None)
    typeid = _text(values["typeid"]) or (from_name.typeid if from_name else None)
    issue = _issue(values["issue"], where)
    if issue is None and from_name is not None:
        issue = from_name.issue
    missing = [key for key, value in (("SCOPE", scope), ("TYPEID", typeid)) if not value]
    missing += ["ISSUE"] if issue is None else []
    if missing:
        raise InvalidHeader(
            f"{where}: {', '.join(missing)} missing and not a constituent file name to fall back on"
        )

    valdate = _date(values["valdate"], "VALDATE", where, required=True)
    subdate = _date(values["subdate"], "SUBDATE", where, required=True)
    evaldate = _date(values["evaldate"], "EVALDATE", where, required=False)
    try:
        date = _date(values["date"], "DATE", where, required=False) or subdate
    except InvalidHeader:
        date = subdate  # DATE is only copied to the CIF: a bad one is not worth refusing

    return {
        "telescop": _text(values["telescop"]) or "XMM",
        "scope": scope,
        "typeid": typeid,
        "issue": issue,
        "valdate": valdate,
        "evaldate": evaldate,
        "subdate": subdate,
        "date": date,
        "category": _text(values["category"]) or "XMMCCF",
        "extsequ": _text(values["extsequ"]) or "",
        "extseqid": _text(values["extseqid"]) or "",
        "creator": _text(values["creator"]) or "",
        "header_size": end,
        "header_digest": xxhash.xxh3_128_hexdigest(raw),
    }


def read_header_file(path: str | Path, name: str | None = None) -> dict[str, Any]:
    """Read a local constituent's primary header (block by block, up to END) and parse it."""
    path = Path(path)
    label = _label(name or path.name)
    chunks: list[bytes] = []
    try:
        with path.open("rb") as stream:
            for _ in range(MAX_HEADER_BLOCKS):
                block = stream.read(BLOCK)
                if not block:
                    break
                chunks.append(block)
                data = b"".join(chunks)
                if header_end(data) is not None or len(block) < BLOCK:
                    break
    except InvalidHeader as exc:
        raise InvalidHeader(f"{label}: {exc}") from None
    except OSError as exc:
        raise InvalidHeader(f"{label}: cannot read {path}: {exc.strerror or exc}") from None
    return parse_header(b"".join(chunks), label)
