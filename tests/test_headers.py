"""Tests for ccfcache.headers: reading the indexing keywords from a constituent's first bytes."""

from __future__ import annotations

from pathlib import Path

import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccfcache.demo.archive import Manifest
from ccfcache.errors import InvalidHeader
from ccfcache.headers import (
    BLOCK,
    CARD,
    MAX_HEADER_BLOCKS,
    header_end,
    parse_header,
    read_header_file,
)

REAL = Path("/work/shared/data/real/XRT3_XAREAEF_0012.CCF")
REAL_NAME = "XRT3_XAREAEF_0012.CCF"


@pytest.fixture(scope="module")
def real_bytes() -> bytes:
    return REAL.read_bytes()


def card(text: str) -> bytes:
    return text.ljust(80).encode("ascii")


def make_header(*cards: str, end: bool = True, pad: bool = True) -> bytes:
    data = card("SIMPLE  =                    T") + b"".join(card(c) for c in cards)
    if end:
        data += card("END")
    if pad and len(data) % BLOCK:
        data += b" " * (BLOCK - len(data) % BLOCK)
    return data


FULL = (
    "TELESCOP= 'XMM     '",
    "SCOPE   = 'EPN     '",
    "TYPEID  = 'QUANTUMEF'",
    "ISSUE   =                   19",
    "VALDATE = '2000-01-01T00:00:00'",
    "SUBDATE = '2019-05-06T07:08:09'",
    "DATE    = '2019-05-01T10:11:12.345'",
    "CATEGORY= 'XMMCCF  '",
    "EXTSEQU = 'ANY     '",
    "EXTSEQID= 'QE      '",
    "CREATOR = 'deceit.pl 1.22'",
)


def without(*keys: str) -> tuple[str, ...]:
    return tuple(c for c in FULL if c.split("=")[0].strip() not in keys)


# --- the real constituent ---------------------------------------------------------------------


def test_real_header_end(real_bytes: bytes) -> None:
    assert header_end(real_bytes) == 5760
    assert header_end(real_bytes[:5760]) == 5760


def test_real_header_keywords(real_bytes: bytes) -> None:
    info = parse_header(real_bytes, REAL_NAME)
    assert (
        info
        == {
            "telescop": "XMM",
            "scope": "XRT3",
            "typeid": "XAREAEF",
            "issue": 12,
            "valdate": "2000-01-13T00:00:00",
            "evaldate": None,
            "subdate": "2014-11-11T06:00:02",
            "date": "2014-09-19T12:00:28",  # the '.000' fraction is dropped
            "category": "XMMCCF",
            "extsequ": "ANY",
            "extseqid": "ONAXISXAREAEF VIGNETTING CORRAREA",
            "creator": "/home/ccflib/sas/lib/perl5/deceit.pl 1.22",
            "header_size": 5760,
            "header_digest": xxhash.xxh3_128_hexdigest(real_bytes[:5760]),
        }
    )


def test_real_header_only_needs_header_bytes(real_bytes: bytes) -> None:
    assert parse_header(real_bytes[:5760], REAL_NAME) == parse_header(real_bytes, REAL_NAME)


def test_real_header_continue_cards_do_not_disturb(real_bytes: bytes) -> None:
    # The XPROC/XDAL cards are long CONTINUE strings holding other names and dates.
    info = parse_header(real_bytes, "some/dir/" + REAL_NAME)
    assert info["scope"] == "XRT3" and info["subdate"] == "2014-11-11T06:00:02"


def test_read_header_file(real_bytes: bytes, tmp_path: Path) -> None:
    assert read_header_file(REAL) == parse_header(real_bytes, REAL_NAME)
    copy = tmp_path / "copy.bin"
    copy.write_bytes(real_bytes)
    assert read_header_file(copy, name=REAL_NAME)["issue"] == 12


def test_read_header_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidHeader, match="cannot read"):
        read_header_file(tmp_path / "EPN_X_0001.CCF")
    short = tmp_path / "EPN_X_0001.CCF"
    short.write_bytes(make_header(*FULL, end=False))
    with pytest.raises(InvalidHeader, match="EPN_X_0001.CCF.*END"):
        read_header_file(short)
    text = tmp_path / "EPN_Y_0001.CCF"
    text.write_text("hello")
    with pytest.raises(InvalidHeader, match="not a FITS"):
        read_header_file(text)


# --- header_end -------------------------------------------------------------------------------


def test_header_end_truncated_data_is_none(real_bytes: bytes) -> None:
    assert header_end(b"") is None
    assert header_end(b"SIMP") is None
    assert header_end(real_bytes[:2880]) is None
    assert header_end(real_bytes[:4000]) is None


def test_header_end_in_partial_block() -> None:
    data = make_header(*FULL, pad=False)
    assert len(data) < BLOCK
    assert header_end(data) == BLOCK


def test_header_end_not_fits() -> None:
    for data in (b"<html>", b"SIMPLE = T", b"\x00" * 100, b"simple  =   T"):
        with pytest.raises(InvalidHeader, match="not a FITS"):
            header_end(data)


def test_header_end_ignores_end_inside_values() -> None:
    data = make_header(
        "COMMENT END of something",
        "OBJECT  = 'END     '",
        "XTEXT   = 'and the".ljust(77) + "END",  # 'END' not at a card boundary
        end=False,
    )
    assert header_end(data) is None
    assert header_end(data + card("END")) == 2 * BLOCK  # appended after the padding


def test_header_end_multi_block() -> None:
    cards = [f"HISTORY line {i}" for i in range(80)]  # 93 cards -> 3 blocks
    data = make_header(*cards, *FULL)
    assert header_end(data) == 3 * BLOCK
    info = parse_header(data, "EPN_QUANTUMEF_0019.CCF")
    assert info["header_size"] == 3 * BLOCK and info["issue"] == 19


def _end_by_cards(data: bytes) -> int | None:
    """The definition, card by card: the first 80-byte card at a card boundary whose keyword
    field is END followed by blanks."""
    for offset in range(0, len(data) - CARD + 1, CARD):
        if data[offset : offset + 3] == b"END" and data[offset + 3 : offset + 8] == b"     ":
            return (offset // BLOCK + 1) * BLOCK
    return None


_PIECES = [b"END", b"END     ", b"END      x", b"ENDX    ", b" END    ", b"E", b" " * 77,
           b"HISTORY ", b"'", b"x" * 80]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_PIECES), max_size=120), st.sampled_from([bytes, bytearray,
                                                                        memoryview]))
def test_header_end_agrees_with_the_card_by_card_definition(pieces: list[bytes],
                                                             kind: type) -> None:
    data = card("SIMPLE  =                    T") + b"".join(pieces)
    assert header_end(kind(data)) == _end_by_cards(data)


def test_header_end_too_many_blocks() -> None:
    data = make_header(*[f"HISTORY {i}" for i in range(36 * MAX_HEADER_BLOCKS)], end=False)
    with pytest.raises(InvalidHeader, match="no END card"):
        header_end(data)
    assert header_end(data, max_blocks=MAX_HEADER_BLOCKS + 2) is None


def test_huge_continue_chain_is_refused() -> None:
    chain = ["LONGSTR = 'x&'"] + [
        "CONTINUE  'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx&'"
    ] * (36 * MAX_HEADER_BLOCKS)
    data = make_header(*FULL, *chain)
    with pytest.raises(InvalidHeader, match="EPN_QUANTUMEF_0019.CCF"):
        parse_header(data, "EPN_QUANTUMEF_0019.CCF")


# --- parse_header: fallbacks and defaults -----------------------------------------------------


def test_full_synthetic_header() -> None:
    info = parse_header(make_header(*FULL), "EPN_QUANTUMEF_0019.CCF")
    assert info["scope"] == "EPN" and info["typeid"] == "QUANTUMEF" and info["issue"] == 19
    assert info["date"] == "2019-05-01T10:11:12"
    assert info["evaldate"] is None


def test_fallback_to_name() -> None:
    data = make_header(*without("SCOPE", "TYPEID", "ISSUE"))
    info = parse_header(data, "epn_quantumef_0019.ccf")
    assert (info["scope"], info["typeid"], info["issue"]) == ("EPN", "QUANTUMEF", 19)


def test_header_wins_over_name() -> None:
    info = parse_header(make_header(*FULL), "EMOS1_OTHER_0003.CCF")
    assert (info["scope"], info["typeid"], info["issue"]) == ("EPN", "QUANTUMEF", 19)


def test_header_alone_is_enough() -> None:
    assert parse_header(make_header(*FULL), "download.tmp")["issue"] == 19


def test_missing_keywords_and_bad_name() -> None:
    with pytest.raises(InvalidHeader, match=r"download\.tmp: SCOPE, ISSUE missing"):
        parse_header(make_header(*without("SCOPE", "ISSUE")), "download.tmp")


def test_issue_zero_is_kept() -> None:
    data = make_header(*without("ISSUE"), "ISSUE   =                    0")
    assert parse_header(data, "EPN_QUANTUMEF_0019.CCF")["issue"] == 0


@pytest.mark.parametrize("value", ["-1", "10000", "1.5", "'abc'", "T", "99999999999999999999"])
def test_bad_issue(value: str) -> None:
    data = make_header(*without("ISSUE"), f"ISSUE   = {value}")
    with pytest.raises(InvalidHeader, match="ISSUE"):
        parse_header(data, "EPN_QUANTUMEF_0019.CCF")


def test_defaults() -> None:
    data = make_header(*without("TELESCOP", "CATEGORY", "DATE", "EXTSEQU", "EXTSEQID", "CREATOR"))
    info = parse_header(data, "EPN_QUANTUMEF_0019.CCF")
    assert info["telescop"] == "XMM"
    assert info["category"] == "XMMCCF"
    assert info["date"] == info["subdate"] == "2019-05-06T07:08:09"
    assert info["extsequ"] == info["extseqid"] == info["creator"] == ""


def test_other_category_is_kept() -> None:
    data = make_header(*without("CATEGORY"), "CATEGORY= 'SCISIMCCF'")
    assert parse_header(data, "EPN_QUANTUMEF_0019.CCF")["category"] == "SCISIMCCF"


def test_evaldate() -> None:
    data = make_header(*FULL, "EVALDATE= '2020-02-03'")
    assert parse_header(data, "EPN_QUANTUMEF_0019.CCF")["evaldate"] == "2020-02-03T00:00:00"
    data = make_header(*FULL, "EVALDATE= '        '")
    assert parse_header(data, "EPN_QUANTUMEF_0019.CCF")["evaldate"] is None


@pytest.mark.parametrize("key", ["VALDATE", "SUBDATE"])
def test_missing_required_date(key: str) -> None:
    with pytest.raises(InvalidHeader, match=f"EPN_QUANTUMEF_0019.CCF: {key} is missing"):
        parse_header(make_header(*without(key)), "EPN_QUANTUMEF_0019.CCF")


@pytest.mark.parametrize("key", ["VALDATE", "SUBDATE", "EVALDATE"])
@pytest.mark.parametrize("value", ["'yesterday'", "'2014-13-45T00:00:00'", "42", "T"])
def test_unparseable_dates(key: str, value: str) -> None:
    data = make_header(*without(key), f"{key:<8}= {value}")
    with pytest.raises(InvalidHeader, match=f"{key}"):
        parse_header(data, "EPN_QUANTUMEF_0019.CCF")


def test_unparseable_date_keyword_falls_back() -> None:
    data = make_header(*without("DATE"), "DATE    = 'sometime'")
    assert parse_header(data, "EPN_QUANTUMEF_0019.CCF")["date"] == "2019-05-06T07:08:09"


def test_missing_end() -> None:
    with pytest.raises(InvalidHeader, match="EPN_QUANTUMEF_0019.CCF: .*no END"):
        parse_header(make_header(*FULL, end=False), "EPN_QUANTUMEF_0019.CCF")


def test_truncated_end_block() -> None:
    with pytest.raises(InvalidHeader, match="truncated"):
        parse_header(make_header(*FULL, pad=False), "EPN_QUANTUMEF_0019.CCF")


def test_not_fits() -> None:
    with pytest.raises(InvalidHeader, match="EPN_X_0001.CCF: not a FITS"):
        parse_header(b"<html><body>Not found</body></html>", "EPN_X_0001.CCF")


def test_unparsable_card_is_invalid_header() -> None:
    data = make_header(*without("ISSUE"), "ISSUE   = 12 abc 'x")
    with pytest.raises(InvalidHeader):
        parse_header(data, "EPN_QUANTUMEF_0019.CCF")


def test_non_ascii_bytes() -> None:
    data = bytearray(make_header(*FULL, "COMMENT cafe au lait"))
    data[data.index(b"cafe") + 3] = 0xE9  # a latin-1 byte in the COMMENT card
    info = parse_header(bytes(data), "EPN_QUANTUMEF_0019.CCF")
    assert info["issue"] == 19


def test_message_is_one_line() -> None:
    data = make_header(*without("VALDATE"), "VALDATE = 'a\nb'")
    with pytest.raises(InvalidHeader) as caught:
        parse_header(data, "EPN_QUANTUMEF_0019.CCF")
    assert "\n" not in str(caught.value)


# --- fuzzing ----------------------------------------------------------------------------------


def _check(data: bytes, name: str) -> None:
    try:
        info = parse_header(data, name)
    except InvalidHeader as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(info["issue"], int) and 0 <= info["issue"] <= 9999
    assert len(info["valdate"]) == 19 and len(info["subdate"]) == 19
    assert info["header_size"] % BLOCK == 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=6000), st.text(max_size=50))
def test_fuzz_random_bytes(data: bytes, name: str) -> None:
    _check(data, name)
    _check(b"SIMPLE  =" + data, name)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=5760))
def test_fuzz_real_header_splice(patch: bytes, at: int) -> None:
    data = REAL.read_bytes()[:5760]
    _check(data[:at] + patch + data[at + len(patch) :], REAL_NAME)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=5759), st.integers(min_value=0, max_value=255)
        ),
        min_size=1,
        max_size=40,
    )
)
def test_fuzz_real_header_byte_flips(flips: list[tuple[int, int]]) -> None:
    data = bytearray(REAL.read_bytes()[:5760])
    for offset, value in flips:
        data[offset] = value
    _check(bytes(data), REAL_NAME)


_CARD_TEXT = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=0, max_size=80
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_CARD_TEXT, max_size=60), st.booleans())
def test_fuzz_card_soup(cards: list[str], keep_full: bool) -> None:
    data = make_header(*(FULL if keep_full else ()), *cards)
    _check(data, "EPN_QUANTUMEF_0019.CCF")


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([c.split("=")[0].strip() for c in FULL] + ["EVALDATE"]),
    _CARD_TEXT,
)
def test_fuzz_keyword_values(key: str, value: str) -> None:
    data = make_header(*without(key), f"{key:<8}= {value}"[:80])
    _check(data, "EPN_QUANTUMEF_0019.CCF")


def test_odd_cards_elsewhere_do_not_warn_or_fail() -> None:
    # pytest turns warnings into errors: astropy's VerifyWarnings must stay inside.
    data = make_header(*FULL, "BADCARD = 'unterminated", "lowcase = 3", "X" * 80)
    assert parse_header(data, "EPN_QUANTUMEF_0019.CCF")["issue"] == 19


# --- the plain-card reader and astropy agree ---------------------------------------------

from ccfcache.headers import _astropy_keywords, _plain_keywords  # noqa: E402

_KEYS = ("TELESCOP", "SCOPE", "TYPEID", "ISSUE", "VALDATE", "EVALDATE", "SUBDATE", "DATE",
         "CATEGORY", "EXTSEQU", "EXTSEQID", "CREATOR", "OBJECT", "scope", "CONTINUE", "COMMENT")
_STRING_TEXT = st.text(alphabet=" abcXYZ019&'/-:.T", max_size=20)
_VALUE_FIELD = st.one_of(
    _STRING_TEXT.map(lambda t: "'" + t.replace("'", "''") + "'"),  # a well-formed string
    _STRING_TEXT.map(lambda t: "'" + t),  # quotes left open or odd
    st.integers(-10**6, 10**6).map(str),
    st.integers(0, 9999).map(lambda n: f"{n:04d}"),  # leading zeros
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    st.sampled_from(["T", "F", "", "1.5D3", "1e3", "(1, 2)", "abc", "+12", "-0", ".5", "1."]),
)


@st.composite
def _keyword_card(draw: st.DrawFn) -> str:
    key = draw(st.sampled_from(_KEYS))
    field = draw(_VALUE_FIELD)
    comment = draw(st.sampled_from(["", " / a comment", "/x", " junk"]))
    indicator = draw(st.sampled_from(["= ", "= ", "= ", "=", "  "]))
    lead = " " * draw(st.integers(0, 12))
    return (f"{key:<8}{indicator}{lead}{field}{comment}")[:80].ljust(80)


def _typed(values: dict[str, object] | None) -> list[tuple[str, str, object]] | None:
    """Values with their types (19 and 19.0 are equal in Python, not in a header)."""
    return None if values is None else [(k, type(v).__name__, v) for k, v in values.items()]


def _agree_with_astropy(text: str) -> bool:
    """True when the plain reader answered (and then it must match astropy)."""
    plain = _plain_keywords(text)
    if plain is None:
        return False
    try:
        expected = _astropy_keywords(text, "X")
    except InvalidHeader:
        pytest.fail(f"astropy cannot read what the plain reader read: {plain}")
    assert _typed(plain) == _typed(expected)
    return True


_HEAD = "SIMPLE  =                    T".ljust(80)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(_keyword_card())
def test_plain_card_reads_as_astropy_reads_it(card_text: str) -> None:
    """One card at a time (most are plain, so the comparison runs on most examples)."""
    _agree_with_astropy(_HEAD + card_text + "END".ljust(80))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_keyword_card(), max_size=14))
def test_plain_cards_read_as_astropy_reads_them(cards: list[str]) -> None:
    """Whole headers: repeated keywords, CONTINUE after a wanted card, lower-case keywords."""
    _agree_with_astropy(_HEAD + "".join(cards) + "END".ljust(80))


def test_plain_reader_covers_each_value_form() -> None:
    """The forms the property tests draw, each checked once by hand against astropy: these
    must take the plain path (else the property tests would compare nothing)."""
    for field in ("'EPN     '", "'a/b' / c", "19", "0019", "+12", "-0", "1.5",
                  ".5", "1.", "1.5E3", "T", "F", "", "'   '", "''"):
        card = f"{'ISSUE':<8}= {field}".ljust(80)
        assert _agree_with_astropy(_HEAD + card + "END".ljust(80)), field


def test_plain_cards_read_real_and_synthetic_headers(real_bytes: bytes) -> None:
    """The fast reader answers for a real constituent's header and for the synthetic one (if it
    fell back to astropy on them, the speed-up would be lost without any test failing)."""
    end = header_end(real_bytes)
    assert end is not None
    real = real_bytes[:end].decode("ascii")
    assert _plain_keywords(real) == _astropy_keywords(real, "X")
    synthetic = make_header(*FULL).decode("ascii")
    assert _plain_keywords(synthetic) == _astropy_keywords(synthetic, "X")
    assert _plain_keywords(synthetic) is not None


_LONG_EXTSEQID = (  # as ESA writes a long list of extensions (the demo archive does too)
    "EXTSEQID= 'OFFSET_CCD1 OFFSET_CCD2 OFFSET_CCD3 OFFSET_CCD4 OFFSET_CCD5 &'",
    "CONTINUE  'OFFSET_CCD6 OFFSET_CCD7 &' / comment",
    "CONTINUE  'DARK_CCD1 '",
)


def test_plain_reader_reads_a_continued_string_as_astropy_does() -> None:
    """A long EXTSEQID continued on CONTINUE cards takes the plain path (it fell back to
    astropy, whose import alone cost a cold CIF ~0.5 CPU-s, for 276 of the demo archive's
    1,550 headers) and gives astropy's value."""
    text = make_header(*without("EXTSEQID"), *_LONG_EXTSEQID).decode("ascii")
    plain = _plain_keywords(text)
    assert plain is not None
    assert plain == _astropy_keywords(text, "X")
    assert plain["extseqid"] == ("OFFSET_CCD1 OFFSET_CCD2 OFFSET_CCD3 OFFSET_CCD4 OFFSET_CCD5 "
                                 "OFFSET_CCD6 OFFSET_CCD7 DARK_CCD1")


def test_plain_reader_reads_the_demo_archives_headers(archive: Manifest) -> None:
    """Every header of a demo archive (long EXTSEQIDs included) is read without astropy."""
    continued = 0
    for path in sorted(archive.full_dir.glob("*.CCF")):
        data = path.read_bytes()[: MAX_HEADER_BLOCKS * BLOCK]
        text = data[: header_end(data)].decode("ascii")
        cards = [text[i : i + 80] for i in range(0, len(text), 80)]
        continued += any(c.startswith("EXTSEQID") and "&'" in c for c in cards)
        assert _plain_keywords(text) == _astropy_keywords(text, "X"), path.name
    assert continued > 0  # the archive has continued EXTSEQIDs: the case was compared


@pytest.mark.parametrize("cards", [
    ("EXTSEQID= 'a b &'", "CONTINUE  'c'", "CONTINUE  'd'"),  # 'c' announces no continuation
    ("EXTSEQID= 'a b'", "CONTINUE  'c'"),  # nor does 'a b'
    ("EXTSEQID= 'a &'", "CONTINUE  'c&'"),  # the last part announces one
    ("ISSUE   = 19", "CONTINUE  'c'"),  # only strings are continued
    ("EXTSEQID= 'a &'", "CONTINUE= 'c'"),
    ("EXTSEQID= 'a &'", "CONTINUE  'it''s'"),
])
def test_unusual_continuations_are_left_to_astropy(cards: tuple[str, ...]) -> None:
    text = make_header(*without("EXTSEQID", "ISSUE"), *cards).decode("ascii")
    assert _plain_keywords(text) is None


def test_an_empty_string_followed_by_a_quote_reads_as_astropy_reads_it() -> None:
    """`''/x'` is the string "'/x" to astropy (its pattern prefers a longer string), not an
    empty string and a comment: the plain reader gave '' (fails without the fix)."""
    text = make_header(*without("EXTSEQID"), "EXTSEQID= ''/acXY1'").decode("ascii")
    plain = _plain_keywords(text)
    assert plain is None or plain == _astropy_keywords(text, "X")


@st.composite
def _continued_string(draw: st.DrawFn) -> list[str]:
    """A keyword card whose string goes on over CONTINUE cards, well-formed or not."""
    key = draw(st.sampled_from(["EXTSEQID", "CREATOR", "SCOPE", "OBJECT"]))
    parts = draw(st.lists(_STRING_TEXT, min_size=2, max_size=4))
    ends = draw(st.lists(st.sampled_from(["&", " &", "& ", ""]), min_size=len(parts),
                         max_size=len(parts)))
    comment = draw(st.sampled_from(["", " / c", "/x", " junk"]))
    lead = draw(st.sampled_from(["CONTINUE  ", "CONTINUE  ", "CONTINUE= ", "CONTINUE "]))
    quote = draw(st.sampled_from(["'", "'", "'", ""]))
    cards = [f"{key:<8}= '{parts[0]}{ends[0]}'{comment}"]
    cards += [f"{lead}{quote}{part}{end}'{comment}"
              for part, end in zip(parts[1:], ends[1:], strict=True)]
    return [c[:80].ljust(80) for c in cards]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(_continued_string(), st.lists(_keyword_card(), max_size=3))
def test_continued_strings_read_as_astropy_reads_them(cards: list[str],
                                                      others: list[str]) -> None:
    _agree_with_astropy(_HEAD + "".join(others) + "".join(cards) + "END".ljust(80))
