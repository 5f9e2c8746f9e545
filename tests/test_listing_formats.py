"""Every server family's index page, served for real on 127.0.0.1 by the test server: Apache
(FancyIndexing table and pre, and without it), nginx, lighttpd, Caddy, IIS and python's
http.server, with links written relative, as `./NAME`, absolute paths or same-host URLs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ccfcache import Cache
from ccfcache.demo.server import HREF_FORMS, LISTING_STYLES, ArchiveServer, render_listing
from ccfcache.listing import detect_format, parse_html_listing
from ccfcache.sources import open_source

FULL = "/pub/ccf/constituents/"
# style -> (format detected, sizes shown: "exact" / "approx" / None, dates to the: "s"/"min"/None)
SHOWN = {
    "table": ("apache", "approx", "min"),
    "pre": ("apache", "approx", "min"),
    "plain": ("apache-plain", None, None),
    "nginx": ("nginx", "exact", "min"),
    "lighttpd": ("lighttpd", "approx", "s"),
    "caddy": ("caddy", "exact", "s"),
    "iis": ("iis", "exact", "min"),
    "python": ("python", None, None),
}
HOSTILE = ["../EPN_EVIL_0001.CCF", "..%2fEPN_EVIL_0002.CCF", "sub/EPN_EVIL_0003.CCF",
           "EPN_EVIL_0004.CCF?x=1", "EPN_EVIL_0005.CCF#top", "..\\EPN_EVIL_0006.CCF"]


def test_every_style_is_covered() -> None:
    assert set(SHOWN) == set(LISTING_STYLES)


@pytest.mark.parametrize("style", LISTING_STYLES)
def test_each_format_lists_every_name_with_its_hints(archive, style: str) -> None:
    detected, sizes, dates = SHOWN[style]
    with ArchiveServer({FULL: archive.root / "full"}, listing_style=style) as server:
        source = open_source(server.url(FULL))
        try:
            listing = source.listing()
        finally:
            source.close()
        page = server.counts(FULL).requests
    assert page == 1
    assert sorted(listing.entries) == archive.full_names()
    for name, entry in listing.entries.items():
        st = os.stat(archive.root / "full" / entry.href)
        if sizes == "exact":
            assert entry.size == st.st_size, name
        elif sizes == "approx":
            assert entry.size_hint is not None, name
            assert abs(entry.size_hint - st.st_size) <= max(0.06 * st.st_size, 110), name
        else:
            assert (entry.size, entry.size_hint) == (None, None), name
        if dates is None:
            assert entry.mtime is None, name
        else:
            pattern = "%Y-%m-%dT%H:%M:%S" if dates == "s" else "%Y-%m-%dT%H:%M:00"
            assert entry.mtime == time.strftime(pattern, time.gmtime(st.st_mtime)), name
    html = render_listing(FULL, [], style)
    assert detect_format(html).name == detected


@pytest.mark.parametrize("style", LISTING_STYLES)
@pytest.mark.parametrize("form", HREF_FORMS)
def test_hostile_links_are_rejected_in_every_format_and_href_form(style: str, form: str) -> None:
    entries = [(name, 1.4e9, 100) for name in HOSTILE]
    entries += [("EPN_CTI_0045.CCF", 1.4e9, 100), ("sub/", 1.4e9, None)]
    html = render_listing(FULL, entries, style, href_form=form, host="127.0.0.1:8080")
    listing = parse_html_listing(html, "http://127.0.0.1:8080" + FULL)
    assert list(listing.entries) == ["EPN_CTI_0045.CCF"]
    assert len(listing.rejected) == len(HOSTILE)
    # the same page read as another host's listing: full URLs point elsewhere, all rejected
    other = parse_html_listing(html, "http://127.0.0.2:8080" + FULL)
    if form == "url":
        assert other.entries == {} and len(other.rejected) == len(HOSTILE) + 1


@pytest.mark.parametrize("style", LISTING_STYLES)
@pytest.mark.parametrize("size", [1, 7, 4096])
def test_a_page_parsed_a_slice_at_a_time_gives_the_same_listing(archive, monkeypatch,
                                                                 style: str, size: int) -> None:
    """html.parser is fed the page a slice at a time (a 100,000-name page is not copied
    whole into its buffer): cutting it anywhere, inside tags, names, dates or character
    references, changes nothing."""
    import ccfcache.listing as listing_module

    entries = [(path.name, path.stat().st_mtime, path.stat().st_size)
               for path in sorted((archive.root / "full").iterdir())[:40]]
    entries += [("EPN_A&amp;B_0001.CCF", 1.4e9, 100), ("sub/", 1.4e9, None)]
    html = render_listing(FULL, entries, style, host="127.0.0.1:8080")
    whole = parse_html_listing(html, "http://127.0.0.1:8080" + FULL)
    monkeypatch.setattr(listing_module, "_FEED_CHARS", size)
    sliced = parse_html_listing(html, "http://127.0.0.1:8080" + FULL)
    assert len(whole.entries) == 40
    assert (sliced.entries, sliced.rejected) == (whole.entries, whole.rejected)


@pytest.mark.parametrize(
    ("style", "form"),
    [(style, None) for style in ("table", "nginx", "lighttpd", "caddy", "iis", "python")]
    + [("table", form) for form in HREF_FORMS if form != "relative"],
)
def test_sync_and_fetch_through_each_format(archive, tmp_path: Path, style: str,
                                            form: str | None) -> None:
    """A whole sync (listing, header reads) and a download, with links as the server wrote
    them; the header reads and the download go to the file itself."""
    with ArchiveServer({FULL: archive.root / "full"}, listing_style=style,
                       href_form=form) as server:
        with Cache(tmp_path / "cache", sources=[server.url(FULL)], workers=4) as cache:
            report = cache.sync()
            assert report.sources == {server.url(FULL): len(archive.full_names())}
            rejected = report.rejected[server.url(FULL)]  # the archive has a README.txt
            assert [href.rpartition("/")[2] for href in rejected] == ["README.txt"]
            assert report.failures == []
            name = archive.full_names()[0]
            path = cache.path(name)
            assert path.read_bytes() == (archive.root / "full" / name).read_bytes()
            second = cache.sync()
            if style == "python":  # no size nor date shown: every header is read again
                assert second.read == len(archive.full_names()) and second.unchanged == 0
            else:
                assert second.read == 0 and second.unchanged == len(archive.full_names())
        assert server.counts(name).bytes >= path.stat().st_size
