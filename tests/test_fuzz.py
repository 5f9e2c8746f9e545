"""Property-based fuzzing of every parser that sees outside input: names, dates, listing rows and
links, local folder names, FITS headers (CONTINUE chains, dates), HTTP header values, and the
CLI's value parsers. The only exceptions allowed are the project's own CcfCacheError subclasses,
with one-line messages; what parses must satisfy the invariants the cache relies on.

(tests/test_headers.py and tests/test_listing.py fuzz raw bytes and HTML soup; this file adds
structure-aware strategies and the parsers those files do not cover.)
"""

from __future__ import annotations

import os
import re
import tempfile
from datetime import datetime
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ccfcache.dates import normalise_date, resolve_date
from ccfcache.errors import CcfCacheError, InvalidDate, InvalidHeader, InvalidName
from ccfcache.headers import BLOCK, header_end, parse_header, read_header_file
from ccfcache.listing import (
    list_directory,
    parse_html_listing,
    parse_listed_size,
    parse_row_date,
)
from ccfcache.names import SCOPES, canonical_name, parse_name

SOAK = bool(os.environ.get("CCFCACHE_SOAK"))  # soak mode: ten times more examples
FAST = settings(max_examples=1500 if SOAK else 150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=400 if SOAK else 40, deadline=None,
               suppress_health_check=[HealthCheck.too_slow])
ANY_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=80)
NAME_RE = re.compile(r"[A-Z][A-Z0-9]{0,4}_[A-Z][A-Z0-9]{0,16}_[0-9]{4}\.CCF")
ALL_INPUT = st.one_of(ANY_TEXT, st.none(), st.integers(), st.binary(max_size=20),
                      st.floats(allow_nan=True), st.lists(st.integers(), max_size=2))


def expected_name(text: object) -> str | None:
    """The oracle for names, written apart from ccfcache.names: the canonical name `text`
    stands for (ASCII, any case, SCOPE_TYPEID_IIII.CCF with a known scope), else None."""
    if not isinstance(text, str) or not text.isascii():
        return None
    upper = text.upper()
    if not upper.endswith(".CCF"):
        return None
    parts = upper[:-4].split("_")
    if len(parts) != 3:
        return None
    scope, typeid, issue = parts
    if scope not in SCOPES or not typeid[:1].isalpha() or not typeid.isalnum():
        return None
    if len(typeid) > 17 or len(issue) != 4 or not issue.isdigit():
        return None
    return upper


_MOMENT_RE = re.compile(
    r"\s*(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2}):(\d{2})(?:\.\d*)?Z?)?\s*")


def expected_moment(text: object) -> str | None:
    """The oracle for dates, apart from ccfcache.dates: the normalised form of a real
    calendar moment written YYYY-MM-DD[(T| )hh:mm:ss[.fff][Z]], else None (other spellings
    are not judged)."""
    match = _MOMENT_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        return None
    numbers = [int(g) if g is not None else 0 for g in match.groups()]
    try:
        moment = datetime(*numbers)  # type: ignore[misc]
    except ValueError:
        return None
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}"


def one_line(exc: BaseException) -> None:
    assert isinstance(exc, CcfCacheError)
    assert str(exc) and "\n" not in str(exc) and "\r" not in str(exc), repr(str(exc))


# -- names -----------------------------------------------------------------------------------------
valid_names = st.builds(
    lambda scope, typeid, issue: f"{scope}_{typeid}_{issue:04d}.CCF",
    st.sampled_from(SCOPES),
    st.from_regex(r"[A-Z][A-Z0-9]{0,16}", fullmatch=True),
    st.integers(min_value=0, max_value=9999),
)
# near misses: one edit of a valid name with characters that matter for paths
DANGEROUS = "./\\%:\0 \t\n~$`;*?[]'\"<>|&#\u0131\u0130\u017f\uff0e\u2024\u00e9"


@st.composite
def mutated_names(draw) -> str:
    name = draw(valid_names)
    at = draw(st.integers(min_value=0, max_value=len(name)))
    what = draw(st.sampled_from(["insert", "replace", "delete", "case"]))
    char = draw(st.sampled_from(DANGEROUS))
    if what == "insert":
        return name[:at] + char + name[at:]
    if what == "replace":
        return name[:at] + char + name[at + 1:]
    if what == "delete":
        return name[:at] + name[at + 1:]
    return name[:at] + name[at:].lower()


@FAST
@given(st.one_of(ALL_INPUT, valid_names, mutated_names()))
def test_fuzz_parse_name(text) -> None:
    expected = expected_name(text)
    try:
        parts = parse_name(text)
    except InvalidName as exc:
        one_line(exc)
        assert expected is None, f"{text!r} is the name {expected} but was refused"
        return
    canonical = parts.name
    assert canonical == expected
    assert NAME_RE.fullmatch(canonical) and canonical.isascii()
    assert parts.scope in SCOPES and 0 <= parts.issue <= 9999
    assert parse_name(canonical) == parts  # round trip
    assert canonical == text.upper()  # only case is normalised, nothing else
    assert Path(canonical).name == canonical and os.sep not in canonical


@FAST
@given(valid_names, st.lists(st.booleans(), min_size=30, max_size=30))
def test_fuzz_name_case_is_insensitive(name: str, flips: list[bool]) -> None:
    mixed = "".join(c.lower() if f else c for c, f in zip(name, flips + [False] * 40,
                                                          strict=False))
    assert parse_name(mixed).name == name
    assert canonical_name(mixed[:-4]) == name  # the .CCF suffix may be left out


@FAST
@given(st.one_of(ANY_TEXT, mutated_names()))
def test_fuzz_canonical_name(text: str) -> None:
    try:
        name = canonical_name(text)
    except InvalidName as exc:
        one_line(exc)
        return
    assert NAME_RE.fullmatch(name)


# -- dates -----------------------------------------------------------------------------------------
date_like = st.builds(
    lambda y, mo, d, h, mi, s, frac, sep, zone: (
        f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}:{s:02d}{frac}{zone}"),
    st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32), st.integers(0, 25),
    st.integers(0, 61), st.integers(0, 61), st.sampled_from(["", ".", ".000", ".123456789"]),
    st.sampled_from(["T", " ", "t", "_", ""]), st.sampled_from(["", "Z", "+00:00", "+01:00"]),
)


@FAST
@given(st.one_of(ALL_INPUT, date_like, date_like.map(lambda d: d[:10]),
                 date_like.map(lambda d: " " + d + "\n")))
def test_fuzz_normalise_date(text) -> None:
    expected = expected_moment(text)
    try:
        result = normalise_date(text)
    except InvalidDate as exc:
        one_line(exc)
        assert expected is None, f"{text!r} is the moment {expected} but was refused"
        return
    assert expected is None or result == expected
    assert len(result) == 19 and result[10] == "T"
    datetime.strptime(result, "%Y-%m-%dT%H:%M:%S")  # a real calendar moment
    assert normalise_date(result) == result  # idempotent
    assert result[:10] == text.strip()[:10]  # the day is never changed, only the format


@FAST
@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
def test_fuzz_every_real_moment_round_trips(moment: datetime) -> None:
    text = f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}"  # %Y is not zero-padded on glibc
    assert normalise_date(text) == text
    assert normalise_date(text + ".500") == text
    assert resolve_date(text) == text


# -- listings --------------------------------------------------------------------------------------
@FAST
@given(ANY_TEXT)
def test_fuzz_row_date_and_size(text: str) -> None:
    date, end = parse_row_date(text)
    assert 0 <= end <= len(text)
    assert date is None or normalise_date(date) == date
    exact, approx = parse_listed_size(text)
    assert exact is None or exact >= 0
    assert approx is None or approx >= 0


encoded = st.text(alphabet=DANGEROUS + "EPN_CTI0123456789.", max_size=40).map(
    lambda s: "".join(f"%{ord(c):02x}" if c in "./\\%" and ord(c) < 128 and len(s) % 2 else c
                      for c in s))


@FAST
@given(st.lists(st.one_of(encoded, mutated_names(), valid_names), max_size=12))
def test_fuzz_listing_links_never_escape(hrefs: list[str]) -> None:
    """Whatever the links, every entry is a bare canonical name that joins under the root."""
    import html

    body = "".join(f'<a href="{html.escape(h, quote=True)}">{html.escape(h)}</a>\n'
                   for h in hrefs)
    try:
        listing = parse_html_listing(f"<html><body><pre>{body}</pre></body></html>", "src")
    except CcfCacheError as exc:
        one_line(exc)
        return
    root = Path("/cache/root")
    for name, entry in listing.entries.items():
        assert parse_name(name).name == name == entry.name
        assert parse_name(entry.href).name == name
        joined = (root / entry.href).resolve()
        assert joined.parent == root


@FEW
@given(st.lists(st.one_of(valid_names, mutated_names(),
                          st.text(alphabet="EPN_.abc\u00e9 %-", min_size=1, max_size=20)),
                max_size=8, unique=True))
def test_fuzz_local_folder_names(names: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        made = []
        for name in names:
            try:
                (Path(folder) / name).write_bytes(b"x")
                made.append(name)
            except (OSError, ValueError):
                continue  # not a possible file name here ('/', NUL, '.', '..')
        assume(made)
        listing = list_directory(Path(folder), folder)
        for entry in listing.entries.values():
            assert (Path(folder) / entry.href).resolve().parent == Path(folder).resolve()
            assert parse_name(entry.href).name == entry.name
        assert len(listing.entries) + len(listing.rejected) == len(os.listdir(folder))


# -- FITS headers ----------------------------------------------------------------------------------
def _card(text: str) -> bytes:
    return text.encode("latin-1", "replace")[:80].ljust(80)


def _header(cards: list[str], *, end: bool = True) -> bytes:
    data = b"".join(_card(c) for c in ["SIMPLE  =                    T", *cards])
    data += _card("END") if end else b""
    return data.ljust(-(-len(data) // BLOCK) * BLOCK)


date_values = st.one_of(date_like.map(lambda d: f"'{d}'"), date_like.map(lambda d: d[:10]),
                        st.sampled_from(["1E308", "-1", "T", "''", "'now'", "'       '"]),
                        st.text(alphabet="0123456789-T:.' ", max_size=30))


@FAST
@given(date_values, date_values, st.one_of(st.none(), date_values), st.booleans())
def test_fuzz_header_dates(valdate: str, subdate: str, evaldate, end: bool) -> None:
    cards = [f"VALDATE = {valdate}", f"SUBDATE = {subdate}"]
    cards += [f"EVALDATE= {evaldate}"] if evaldate is not None else []
    try:
        info = parse_header(_header(cards, end=end), "EPN_CTI_0045.CCF")
    except InvalidHeader as exc:
        one_line(exc)
        return
    for key in ("valdate", "subdate", "date"):
        assert normalise_date(info[key]) == info[key]
    assert info["evaldate"] is None or normalise_date(info["evaldate"]) == info["evaldate"]


@FEW
@given(st.integers(min_value=0, max_value=4000), st.text(alphabet="x&' ", max_size=68),
       st.booleans())
def test_fuzz_continue_chains(length: int, piece: str, end: bool) -> None:
    cards = ["VALDATE = '2000-01-01T00:00:00'", "SUBDATE = '2000-01-01T00:00:00'",
             "CREATOR = 'start&'"] + [f"CONTINUE  '{piece}&'"] * length
    data = _header(cards, end=end)
    try:
        info = parse_header(data, "EPN_CTI_0045.CCF")
    except InvalidHeader as exc:
        one_line(exc)
        assert not end or len(data) > 100 * BLOCK
        return
    assert end and info["header_size"] == len(data) <= 100 * BLOCK


@FAST
@given(st.binary(max_size=3 * BLOCK), st.integers(min_value=1, max_value=4))
def test_fuzz_header_end_and_file_reader(data: bytes, max_blocks: int) -> None:
    for candidate in (data, b"SIMPLE  =" + data):
        try:
            end = header_end(candidate, max_blocks=max_blocks)
        except InvalidHeader as exc:
            one_line(exc)
        else:
            assert end is None or (end % BLOCK == 0 and 0 < end <= max_blocks * BLOCK)
    with tempfile.NamedTemporaryFile(suffix=".CCF") as handle:
        handle.write(b"SIMPLE  =" + data)
        handle.flush()
        try:
            read_header_file(handle.name, "EPN_CTI_0045.CCF")
        except InvalidHeader as exc:
            one_line(exc)


# -- HTTP header values and CLI value parsers ------------------------------------------------------
latin1 = st.text(alphabet=st.characters(max_codepoint=255), max_size=60)


@FAST
@given(st.one_of(latin1, st.none(),
                 st.from_regex(r"bytes \d{1,5}-\d{1,5}/\d{1,7}", fullmatch=True)))
def test_fuzz_http_header_values(value) -> None:
    """Server-sent Content-Range, Content-Length and Last-Modified (httpx decodes them as
    latin-1, so '²' is possible): parsed to a number, a date or None, never an exception."""
    from ccfcache.transport_http import content_range, http_date_to_iso, to_int

    for result in content_range(value):
        assert result is None or (isinstance(result, int) and result >= 0)
    assert to_int(value, -1) >= -1
    date = http_date_to_iso(value)
    assert date is None or len(date) == 19


@FAST
@given(ANY_TEXT)
def test_fuzz_cli_value_parsers(text: str) -> None:
    from ccfcache.cifbuild_params import parse_cifbuild_args
    from ccfcache.units import parse_duration
    from ccfcache.units import parse_size as parse_byte_size

    for parser in (parse_duration, parse_byte_size):
        try:
            value = parser(text)
        except CcfCacheError as exc:
            one_line(exc)
        else:
            assert value >= 0
    try:
        parse_cifbuild_args(text.split())
    except CcfCacheError as exc:
        one_line(exc)
