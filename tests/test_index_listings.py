"""The index's answers to a no-change sync (every listing answered 304): which names no
listing lists any more, which rows must be read again, which rows belong to sources no longer
configured. Each is asked of a real SQLite index built with the sync's own writes."""

from __future__ import annotations

import time
from pathlib import Path

from ccfcache.index import Index
from ccfcache.rows import ListingUnread

A = "http://a.example/ccf/"
B = "http://b.example/ccf/"
C = "http://c.example/ccf/"


def _unread(source: str, issue: int, *, dated: bool = True) -> ListingUnread:
    name = f"EMOS1_FWC_{issue:04d}.CCF"
    return ListingUnread(source, name, 2880 if dated else None,
                         "2020-01-01T00:00:00" if dated else None, None, name,
                         "EMOS1", "FWC", issue)


def _index(tmp_path: Path, rows: list[ListingUnread], withdrawn: list[str] = ()) -> Index:
    index = Index(tmp_path / "index.sqlite")
    index.apply_sync([], dropped=[], withdrawn=list(withdrawn), listed=set(),
                     source_counts={}, now=time.time(), unread=rows)
    return index


def test_active_names_unlisted_by_the_sources_asked(tmp_path: Path) -> None:
    """A lists 1-5, B lists 4-7 and C lists 8: asked of A and B, only 8 is unlisted; of A,
    6-8; of A, B and C, none (the answer found by counting, no probe per name). Withdrawn
    names never count, listed or not."""
    rows = [_unread(A, i) for i in range(1, 6)] + [_unread(B, i) for i in range(4, 8)]
    rows += [_unread(C, 8)]
    index = _index(tmp_path, rows)
    assert index.active_unlisted_by([A, B]) == ["EMOS1_FWC_0008.CCF"]
    assert sorted(index.active_unlisted_by([A])) == [f"EMOS1_FWC_000{i}.CCF" for i in (6, 7, 8)]
    assert index.active_unlisted_by([A, B, C]) == []
    assert index.active_unlisted_by([B, C], index.listing_counts([B, C])) == [
        f"EMOS1_FWC_000{i}.CCF" for i in (1, 2, 3)]
    index.apply_sync([], dropped=[], withdrawn=["EMOS1_FWC_0008.CCF", "EMOS1_FWC_0001.CCF"],
                     listed=set(), source_counts={}, now=time.time())
    assert index.active_count() == 6
    assert index.withdrawn_names() == {"EMOS1_FWC_0008.CCF", "EMOS1_FWC_0001.CCF"}
    assert index.withdrawn_listed_by([A]) == ["EMOS1_FWC_0001.CCF"]
    assert index.active_unlisted_by([A, B]) == []
    assert sorted(index.active_unlisted_by([B])) == ["EMOS1_FWC_0002.CCF", "EMOS1_FWC_0003.CCF"]


def test_rows_read_again_and_rows_of_other_sources(tmp_path: Path) -> None:
    """Rows whose header is not read, or whose listing shows neither size nor date, are read
    again though their listing did not change (found in a partial index, not by a scan);
    rows of sources not asked are those of the sources no longer configured."""
    rows = [_unread(A, 1), _unread(A, 2, dated=False), _unread(B, 3)]
    index = _index(tmp_path, rows)
    stale = index.stale_listings([A])
    assert [(r.source, r.name) for r in stale] == [(A, "EMOS1_FWC_0001.CCF"),
                                                   (A, "EMOS1_FWC_0002.CCF")]
    assert index.listings_outside([A]) == [(B, "EMOS1_FWC_0003.CCF")]
    assert sorted(index.listings_outside([])) == sorted(
        (r.source, r.name) for r in rows)
    assert index.listings_outside([A, B]) == []
    plans = {r["name"] for r in index.query("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"listings_stale", "constituents_withdrawn"} <= plans
