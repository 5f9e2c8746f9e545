"""Tests for ccfcache.listing: HTML index pages and local folders as constituent listings."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccfcache.errors import ListingError
from ccfcache.listing import (
    Listing,
    ListingEntry,
    _defuse,
    list_directory,
    looks_truncated,
    parse_html_listing,
    parse_listed_size,
)
from ccfcache.names import parse_name

SOURCE = "https://sasdev-xmm.esac.esa.int/pub/ccf/constituents/"

APACHE_TABLE = """<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">
<html>
 <head>
  <title>Index of /pub/ccf/constituents</title>
 </head>
 <body>
<h1>Index of /pub/ccf/constituents</h1>
  <table>
   <tr><th valign="top"><img src="/icons/blank.gif" alt="[ICO]"></th><th><a href="?C=N;O=D">Name</a></th><th><a href="?C=M;O=A">Last modified</a></th><th><a href="?C=S;O=A">Size</a></th><th><a href="?C=D;O=A">Description</a></th></tr>
   <tr><th colspan="5"><hr></th></tr>
<tr><td valign="top"><img src="/icons/back.gif" alt="[PARENTDIR]"></td><td><a href="/pub/ccf/">Parent Directory</a></td><td>&nbsp;</td><td align="right">  - </td><td>&nbsp;</td></tr>
<tr><td valign="top"><img src="/icons/unknown.gif" alt="[   ]"></td><td><a href="EMOS1_REDIST_0074.CCF">EMOS1_REDIST_0074.CCF</a></td><td align="right">2013-06-17 14:12  </td><td align="right">5.0M</td><td>&nbsp;</td></tr>
<tr><td valign="top"><img src="/icons/unknown.gif" alt="[   ]"></td><td><a href="EPN_FWC_0003.CCF">EPN_FWC_0003.CCF</a></td><td align="right">2019-02-01 09:30  </td><td align="right">544M</td><td>&nbsp;</td></tr>
<tr><td valign="top"><img src="/icons/text.gif" alt="[TXT]"></td><td><a href="README.txt">README.txt</a></td><td align="right">2021-03-04 10:00  </td><td align="right">1.2K</td><td>&nbsp;</td></tr>
<tr><td valign="top"><img src="/icons/unknown.gif" alt="[   ]"></td><td><a href="XMM_CALINDEX_0431.CCF">XMM_CALINDEX_0431.CCF</a></td><td align="right">2024-11-05 08:00  </td><td align="right">1.2G</td><td>&nbsp;</td></tr>
<tr><td valign="top"><img src="/icons/unknown.gif" alt="[   ]"></td><td><a href="XRT3_XAREAEF_0012.CCF">XRT3_XAREAEF_0012.CCF</a></td><td align="right">2014-11-11 06:00  </td><td align="right"> 82K</td><td>&nbsp;</td></tr>
<tr><td valign="top"><img src="/icons/folder.gif" alt="[DIR]"></td><td><a href="extras/">extras/</a></td><td align="right">2020-01-01 00:00  </td><td align="right">  - </td><td>&nbsp;</td></tr>
   <tr><th colspan="5"><hr></th></tr>
</table>
<address>Apache/2.4.37 (Red Hat Enterprise Linux) Server at sasdev-xmm.esac.esa.int Port 443</address>
</body></html>
"""  # noqa: E501 (Apache writes one row a line)

APACHE_PRE = """<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">
<html>
 <head>
  <title>Index of /FTP/xmm/data/CCF</title>
 </head>
 <body>
<h1>Index of /FTP/xmm/data/CCF</h1>
<pre><img src="/icons/blank.gif" alt="Icon "> <a href="?C=N;O=D">Name</a>                    <a href="?C=M;O=A">Last modified</a>      <a href="?C=S;O=A">Size</a>  <a href="?C=D;O=A">Description</a><hr><img src="/icons/back.gif" alt="[PARENTDIR]"> <a href="/FTP/xmm/data/">Parent Directory</a>                             -   
<img src="/icons/unknown.gif" alt="[   ]"> <a href="EPN_QUANTUMEF_0019.CCF">EPN_QUANTUMEF_0019.CCF</a>  11-Nov-2014 06:00   25K  
<a href="RGS1_BADPIX_0004.CCF"><img src="/icons/unknown.gif" alt="[   ]"></a> <a href="RGS1_BADPIX_0004.CCF">RGS1_BADPIX_0004.CCF</a>    2001-01-02 03:04  512  
<img src="/icons/unknown.gif" alt="[   ]"> <a href="XRT1_XAREAEF_0009.CCF">XRT1_XAREAEF_0009.CCF</a>
<img src="/icons/folder.gif" alt="[DIR]"> <a href="old/">old/</a>                    2014-11-11 06:00    -   
<hr></pre>
</body></html>
"""  # noqa: E501, W291


def page(*links: str) -> str:
    rows = "\n".join(f'<tr><td><a href="{href}">x</a></td></tr>' for href in links)
    return f"<html><body><table>{rows}</table></body></html>"


# --- realistic pages --------------------------------------------------------------------------


def test_apache_table() -> None:
    listing = parse_html_listing(APACHE_TABLE, SOURCE)
    assert isinstance(listing, Listing) and listing.source == SOURCE
    assert sorted(listing.entries) == [
        "EMOS1_REDIST_0074.CCF",
        "EPN_FWC_0003.CCF",
        "XMM_CALINDEX_0431.CCF",
        "XRT3_XAREAEF_0012.CCF",
    ]
    assert listing.entries["XRT3_XAREAEF_0012.CCF"] == ListingEntry(
        name="XRT3_XAREAEF_0012.CCF",
        href="XRT3_XAREAEF_0012.CCF",
        size=None,
        size_hint=82 * 1024,
        mtime="2014-11-11T06:00:00",
    )
    assert listing.entries["EMOS1_REDIST_0074.CCF"].size_hint == 5 * 1024**2
    assert listing.entries["EPN_FWC_0003.CCF"].size_hint == 544 * 1024**2
    assert listing.entries["XMM_CALINDEX_0431.CCF"].size_hint == round(1.2 * 1024**3)
    assert listing.rejected == ["README.txt"]  # not extras/, the parent or the sort links


def test_pre_page() -> None:
    listing = parse_html_listing(APACHE_PRE, SOURCE)
    assert sorted(listing.entries) == [
        "EPN_QUANTUMEF_0019.CCF",
        "RGS1_BADPIX_0004.CCF",
        "XRT1_XAREAEF_0009.CCF",
    ]
    quantum = listing.entries["EPN_QUANTUMEF_0019.CCF"]
    assert (quantum.size, quantum.size_hint, quantum.mtime) == (None, 25600, "2014-11-11T06:00:00")
    badpix = listing.entries["RGS1_BADPIX_0004.CCF"]  # icon and name both linked: merged
    assert (badpix.size, badpix.size_hint, badpix.mtime) == (512, 512, "2001-01-02T03:04:00")
    bare = listing.entries["XRT1_XAREAEF_0009.CCF"]  # no date or size on its line
    assert (bare.size, bare.size_hint, bare.mtime) == (None, None, None)
    assert listing.rejected == []


def test_nginx_style_page() -> None:
    html = (
        "<html><head><title>Index of /ccf/</title></head><body><h1>Index of /ccf/</h1><hr><pre>"
        '<a href="../">../</a>\n'
        '<a href="EPN_CTI_0045.CCF">EPN_CTI_0045.CCF</a>          '
        "19-Sep-2014 12:00:28             83520\n"
        "</pre><hr></body></html>"
    )
    entry = parse_html_listing(html, SOURCE).entries["EPN_CTI_0045.CCF"]
    assert (entry.size, entry.mtime) == (83520, "2014-09-19T12:00:28")


def test_page_without_html_element() -> None:
    listing = parse_html_listing('<a href="EPN_CTI_0045.CCF">x</a>', SOURCE)
    assert list(listing.entries) == ["EPN_CTI_0045.CCF"]


def test_no_constituents_is_an_empty_listing() -> None:
    listing = parse_html_listing(page("README.txt", "extras/"), SOURCE)
    assert listing.entries == {} and listing.rejected == ["README.txt"]


def test_single_quoted_and_unquoted_hrefs() -> None:
    html = (
        "<html><body><a href='EPN_CTI_0045.CCF'>a</a> <a href=OM_BADPIX_0001.CCF>b</a>"
        "</body></html>"
    )
    assert sorted(parse_html_listing(html, SOURCE).entries) == [
        "EPN_CTI_0045.CCF",
        "OM_BADPIX_0001.CCF",
    ]


def test_percent_encoded_plain_name_is_fine() -> None:
    entry = parse_html_listing(page("%45PN_CTI_0045.CCF"), SOURCE).entries["EPN_CTI_0045.CCF"]
    assert entry.href == "EPN_CTI_0045.CCF"


# --- hostile hrefs ----------------------------------------------------------------------------

HOSTILE_REJECTED = [
    "../x.CCF",
    "../EPN_X_0001.CCF",
    "%2e%2e/EPN_X_0001.CCF",
    "..%2fEPN_X_0001.CCF",
    "..%5cEPN_X_0001.CCF",
    "..\\EPN_X_0001.CCF",
    "/etc/EPN_X_0001.CCF",
    "http://evil/EPN_X_0001.CCF",
    "//evil/EPN_X_0001.CCF",
    "file:EPN_X_0001.CCF",
    "./sub/EPN_X_0001.CCF",
    "sub/EPN_X_0001.CCF",
    "/pub/ccf/EPN_X_0001.CCF",
    "/pub/ccf/constituents/sub/EPN_X_0001.CCF",
    "/pub/ccf/constituents/../EPN_X_0001.CCF",
    "/pub/ccf/constituents/%2e%2e/EPN_X_0001.CCF",
    "/pub/ccf/constituents/.%2FEPN_X_0001.CCF",
    "https://evil.example/pub/ccf/constituents/EPN_X_0001.CCF",
    "http://sasdev-xmm.esac.esa.int/pub/ccf/constituents/EPN_X_0001.CCF",
    "https://sasdev-xmm.esac.esa.int:8443/pub/ccf/constituents/EPN_X_0001.CCF",
    "https://user@sasdev-xmm.esac.esa.int/pub/ccf/constituents/EPN_X_0001.CCF",
    "EPN_X_0001.CCF.bak",
    "EPN_X_0001.CCF%00",
    "EPN_X_0001.CCF?download=1",
    "EPN_X_0001.CCF#top",
    "EPN_" + "X" * 300 + "_0001.CCF",
    "EPN_QUANTUMÉF_0001.CCF",
    "EPN_QUANTUM%C3%89F_0001.CCF",
    "EPN_X_1.CCF",
    "FOO_X_0001.CCF",
    "EPN_X_0001.CCF.",
    "EPN X_0001.CCF",
]
HOSTILE_IGNORED = ["sub/dir/", "../", "..%2f", "/", "?C=M;O=A", "#", "", "http://evil/"]


# The forms servers write for a file in the listed folder itself (relative, Caddy's ./NAME,
# IIS's absolute path, a same-host URL): each is used, as the name it spells.
ACCEPTED = [
    "EPN_X_0001.CCF",
    "./EPN_X_0001.CCF",
    "/pub/ccf/constituents/EPN_X_0001.CCF",
    "/pub/ccf/constituents/%45PN_X_0001.CCF",
    "https://sasdev-xmm.esac.esa.int/pub/ccf/constituents/EPN_X_0001.CCF",
    "HTTPS://SASDEV-XMM.esac.esa.int/pub/ccf/constituents/EPN_X_0001.CCF",
]


@pytest.mark.parametrize("href", ACCEPTED)
def test_link_into_the_listed_folder_is_used(href: str) -> None:
    listing = parse_html_listing(page(href), SOURCE)
    assert listing.rejected == []
    assert listing.entries["EPN_X_0001.CCF"].href == "EPN_X_0001.CCF"


@pytest.mark.parametrize("href", HOSTILE_REJECTED)
def test_hostile_href_is_rejected(href: str) -> None:
    listing = parse_html_listing(page(href), SOURCE)
    assert listing.entries == {}
    assert len(listing.rejected) == 1
    assert len(listing.rejected[0]) <= 200


@pytest.mark.parametrize("href", HOSTILE_IGNORED)
def test_folder_parent_and_sort_links_are_ignored(href: str) -> None:
    listing = parse_html_listing(page(href), SOURCE)
    assert listing.entries == {} and listing.rejected == []


def test_lowercase_variant_maps_to_canonical_name() -> None:
    listing = parse_html_listing(page("epn_cti_0045.ccf"), SOURCE)
    entry = listing.entries["EPN_CTI_0045.CCF"]
    assert entry.name == "EPN_CTI_0045.CCF" and entry.href == "epn_cti_0045.ccf"


def test_case_variants_keep_the_first() -> None:
    listing = parse_html_listing(page("EPN_CTI_0045.CCF", "epn_cti_0045.ccf"), SOURCE)
    assert listing.entries["EPN_CTI_0045.CCF"].href == "EPN_CTI_0045.CCF"
    assert listing.rejected == ["epn_cti_0045.ccf"]


def test_link_without_href_is_ignored() -> None:
    html = '<html><body><a name="top">x</a><a href="EPN_CTI_0045.CCF">y</a></body></html>'
    listing = parse_html_listing(html, SOURCE)
    assert list(listing.entries) == ["EPN_CTI_0045.CCF"] and listing.rejected == []


# --- broken pages -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n",
        "Service temporarily unavailable",
        "EPN_CTI_0045.CCF\nXRT3_XAREAEF_0012.CCF\n",
        '{"error": "not found"}',
        "\x00\x01\x02garbage<a href='EPN_CTI_0045.CCF'>",
    ],
)
def test_garbage_raises(text: str) -> None:
    with pytest.raises(ListingError, match=SOURCE):
        parse_html_listing(text, SOURCE)


def test_truncated_page_raises() -> None:
    cut = APACHE_TABLE[: APACHE_TABLE.index("XRT3_XAREAEF_0012")]
    assert looks_truncated(cut)
    with pytest.raises(ListingError, match="truncated"):
        parse_html_listing(cut, SOURCE)
    assert not looks_truncated(APACHE_TABLE)
    assert not looks_truncated('<a href="EPN_CTI_0045.CCF">x</a>')  # never claimed to be whole


@pytest.mark.parametrize("unit", ["<a href=", "<!--", "</a", "<a b='>"])
def test_unterminated_tag_runs_stay_fast(unit: str) -> None:
    # Without defusing, html.parser needs minutes for this (quadratic or worse).
    html = "<html><body>" + unit * 20000 + '<a href="EPN_CTI_0045.CCF">x</a></body></html>'
    start = time.monotonic()
    try:
        parse_html_listing(html, SOURCE)
    except ListingError:
        pass
    assert time.monotonic() - start < 10


def test_well_formed_pages_are_not_defused() -> None:
    assert _defuse(APACHE_TABLE) == APACHE_TABLE
    assert _defuse(APACHE_PRE) == APACHE_PRE
    assert _defuse("a < b <c> <") == "a &lt; b <c> &lt;"


@pytest.mark.parametrize("text", [APACHE_TABLE, APACHE_PRE])
def test_inert_tags_are_stripped_without_changing_what_is_read(text: str, monkeypatch) -> None:
    """Cells, images and styling tags are removed before html.parser (for speed); the entries
    read, their dates and sizes are the same as when the parser sees every tag."""
    import re

    import ccfcache.listing as listing_module

    styled = text.replace("<a href", "<b><i>x</i></b><a href").replace("</a>", "</a><br/>")
    fast = parse_html_listing(styled, SOURCE)
    assert listing_module._INERT_TAGS_RE.search(styled)
    monkeypatch.setattr(listing_module, "_INERT_TAGS_RE", re.compile(r"(?!)"))
    full = parse_html_listing(styled, SOURCE)
    assert fast.entries and fast.entries == full.entries
    assert fast.rejected == full.rejected


def test_error_message_is_one_line() -> None:
    with pytest.raises(ListingError) as caught:
        parse_html_listing("garbage", SOURCE)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("82K", (None, 82 * 1024)),
        (" 5.0M ", (None, 5 * 1024**2)),
        ("1.2G", (None, round(1.2 * 1024**3))),
        ("512", (512, 512)),
        ("  - ", (None, None)),
        ("", (None, None)),
    ],
)
def test_parse_listed_size(text: str, expected: tuple[int | None, int | None]) -> None:
    assert parse_listed_size(text) == expected


# --- fuzzing ----------------------------------------------------------------------------------


def _check(text: str) -> None:
    try:
        listing = parse_html_listing(text, SOURCE)
    except ListingError as exc:
        assert "\n" not in str(exc)
        return
    for name, entry in listing.entries.items():
        assert parse_name(name).name == name == entry.name
        assert parse_name(entry.href).name == name
        assert "/" not in entry.href and ".." not in entry.href


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=2000))
def test_fuzz_arbitrary_text(text: str) -> None:
    _check(text)


_HREF = st.one_of(
    st.sampled_from(HOSTILE_REJECTED + HOSTILE_IGNORED + ["EPN_CTI_0045.CCF", "om_x_0001.ccf"]),
    st.text(max_size=40),
)
_FRAGMENT = st.sampled_from(
    ["<html>", "</html>", "<table>", "<tr>", "</tr>", "<pre>", "</pre>", "<td>", "\n", " 82K",
     "2014-11-11 06:00", "<!--", "-->", "<![", "<!", "&nbsp;", "&#0;", "<a>", "</a>", "<"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_HREF.map(lambda h: f'<a href="{h}">{h}</a>'), _FRAGMENT)))
def test_fuzz_html_soup(parts: list[str]) -> None:
    _check("".join(parts))


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=len(APACHE_TABLE)), st.text(max_size=20))
def test_fuzz_spliced_real_page(at: int, insert: str) -> None:
    _check(APACHE_TABLE[:at] + insert + APACHE_TABLE[at:])


# --- local folders ----------------------------------------------------------------------------


def test_list_directory(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "EPN_CTI_0045.CCF").write_bytes(b"x" * 8640)
    (mirror / "xrt3_xareaef_0012.ccf").write_bytes(b"y" * 10)
    (mirror / "README.txt").write_text("hi")
    (mirror / ".EPN_CTI_0046.CCF.aBcDeF").write_bytes(b"partial")
    (mirror / "extras").mkdir()
    (mirror / "extras" / "EPN_CTI_0047.CCF").write_bytes(b"z")
    os.utime(mirror / "EPN_CTI_0045.CCF", (1415685602, 1415685602))
    outside = tmp_path / "EPN_SECRET_0001.CCF"
    outside.write_text("secret")
    (mirror / "EPN_SECRET_0001.CCF").symlink_to(outside)
    (mirror / "OM_LINKED_0001.CCF").symlink_to(mirror / "EPN_CTI_0045.CCF")
    (mirror / "OM_BROKEN_0001.CCF").symlink_to(mirror / "missing")
    (mirror / "OM_DIRLINK_0001.CCF").symlink_to(tmp_path)

    listing = list_directory(mirror, "rsync://mirror/XMM_CCF")
    assert listing.source == "rsync://mirror/XMM_CCF"
    assert sorted(listing.entries) == [
        "EPN_CTI_0045.CCF",
        "OM_LINKED_0001.CCF",
        "XRT3_XAREAEF_0012.CCF",
    ]
    cti = listing.entries["EPN_CTI_0045.CCF"]
    assert cti == ListingEntry(
        name="EPN_CTI_0045.CCF",
        href="EPN_CTI_0045.CCF",
        size=8640,
        size_hint=8640,
        mtime="2014-11-11T06:00:02",
    )
    assert listing.entries["XRT3_XAREAEF_0012.CCF"].href == "xrt3_xareaef_0012.ccf"
    assert sorted(listing.rejected) == [
        ".EPN_CTI_0046.CCF.aBcDeF",
        "EPN_SECRET_0001.CCF",
        "OM_BROKEN_0001.CCF",
        "OM_DIRLINK_0001.CCF",
        "README.txt",
    ]


def test_list_directory_case_duplicates(tmp_path: Path) -> None:
    (tmp_path / "EPN_CTI_0045.CCF").write_bytes(b"a")
    (tmp_path / "epn_cti_0045.ccf").write_bytes(b"bb")
    listing = list_directory(tmp_path, "local")
    assert listing.entries["EPN_CTI_0045.CCF"].size == 1
    assert listing.rejected == ["epn_cti_0045.ccf"]


def test_list_directory_errors(tmp_path: Path) -> None:
    with pytest.raises(ListingError, match="cannot list"):
        list_directory(tmp_path / "missing", "local")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ListingError, match="cannot list"):
        list_directory(tmp_path / "file", "local")


@pytest.mark.parametrize("href", ["%2f%2f]", "//[x/EPN_QUANTUMEF_0019.CCF", "http://[::1/A.CCF"])
def test_links_urllib_refuses_are_rejected_not_raised(href: str) -> None:
    """A link urlsplit cannot split (an unbalanced bracket in what looks like a host) is one
    rejected link, not a ValueError that stops the sync (found by test_fuzz)."""
    body = f'<html><body><pre><a href="{href}">x</a>\n<a href="EPN_QUANTUMEF_0019.CCF">y</a>'
    listing = parse_html_listing(body + "</pre></body></html>", "http://h/ccf/")
    assert list(listing.entries) == ["EPN_QUANTUMEF_0019.CCF"]
    assert len(listing.rejected) == 1


def test_a_big_listing_is_parsed_as_it_streams_and_keeps_no_memo(monkeypatch) -> None:
    """A page of many rows parsed a few rows at a time gives every entry, with its date and
    size, whatever row a slice ends in; the entries hold no per-object dict, and the names
    are not kept in parse_name's memo (100,000 names held 28 MiB of it through a sync).
    Fails without the change: the memo grew by the page's names."""
    import ccfcache.listing as listing_module
    from ccfcache.demo.server import render_listing
    from ccfcache.names import _parse_text

    entries = [(f"EPN_BIG_{issue:04d}.CCF", 1.4e9 + issue * 60, 2880 + issue)
               for issue in range(1, 2001)]
    html = render_listing("/ccf/", entries, "table")
    monkeypatch.setattr(listing_module, "_FEED_CHARS", 1000)  # ~5 rows a slice
    _parse_text.cache_clear()
    listing = parse_html_listing(html, "http://127.0.0.1:8080/ccf/")
    assert _parse_text.cache_info().currsize == 0
    assert len(listing.entries) == 2000 and listing.rejected == []
    entry = listing.entries["EPN_BIG_1234.CCF"]
    assert (entry.href, entry.size_hint, entry.mtime) == (
        "EPN_BIG_1234.CCF", 4096,  # Apache shows "4.0K"
        time.strftime("%Y-%m-%dT%H:%M:00", time.gmtime(1.4e9 + 1234 * 60)))
    assert not hasattr(entry, "__dict__")
