"""Download one file from a transport into a partial file of the store: resume only what
was downloaded under the same validators, cap at the expected size, hash while streaming,
and give up on a transfer slower than the minimum rate. Retries follow `retry.py`.

The loop is deliberately plain: one ranged stream at a time, written chunk by chunk.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import BinaryIO

from .cancel import check, pause
from .config import env
from .errors import ChangedOnServerError, FetchError, TransferError
from .retry import Policy, sleep_before_retry
from .store import Partial, PartialMeta, StreamHasher, Writeback, disk_error, write_all
from .transport import RangeNotSatisfiable, RangeStream, Transport, Validators

DEFAULT_MIN_RATE = 1024  # bytes/s: a transfer slower than this over a whole window fails
DEFAULT_RATE_WINDOW_S = 60.0


@dataclass(frozen=True)
class RateFloor:
    """The slowest a transfer may be: fewer than `rate * window` bytes in any `window`
    seconds ends it (TransferError; the next try resumes)."""

    rate: float = DEFAULT_MIN_RATE
    window: float = DEFAULT_RATE_WINDOW_S

    @classmethod
    def from_env(cls) -> RateFloor:
        """$CCFCACHE_MIN_RATE (bytes/s, 0 disables) and $CCFCACHE_RATE_WINDOW (seconds)."""
        def number(name: str, default: float) -> float:
            try:
                return max(0.0, float(env(name) or default))
            except ValueError:
                return default

        return cls(number("CCFCACHE_MIN_RATE", DEFAULT_MIN_RATE),
                   number("CCFCACHE_RATE_WINDOW", DEFAULT_RATE_WINDOW_S) or 1.0)


class RateWatch:
    """Checks a transfer against a RateFloor as bytes arrive."""

    def __init__(self, floor: RateFloor) -> None:
        self.floor = floor
        self.mark = time.monotonic()
        self.count = 0

    def advance(self, count: int, what: str) -> None:
        self.count += count
        now = time.monotonic()
        if now - self.mark < self.floor.window:
            return
        rate = self.count / (now - self.mark)
        if rate < self.floor.rate:
            raise TransferError(f"{what}: too slow ({rate:.0f} B/s for {now - self.mark:.0f} s,"
                                f" below the minimum {self.floor.rate:.0f} B/s)")
        self.mark, self.count = now, 0


def download(transport: Transport, name: str, partial: Partial, expected_size: int,
             seen: Validators | None, hasher: StreamHasher, *, policy: Policy,
             floor: RateFloor | None = None, remote: str | None = None) -> Validators:
    """Download `name` into `partial` until it holds `expected_size` bytes; return the
    validators the bytes were downloaded under.

    `seen` are the validators recorded when the header was read at sync: a server that now
    describes another file (another ETag) makes this a FetchError, never a download of bytes
    the index did not describe. A partial is resumed only from the same source under its
    own validators (If-Range), else started over. `remote` is the file name as the source
    spells it (its listing's link), when it differs from `name`.
    """
    floor = floor or RateFloor.from_env()
    what = f"download of {name}"
    last: FetchError | None = None
    for attempt in range(policy.retries + 1):
        if attempt:
            sleep_before_retry(policy, attempt - 1, sleep=pause)
        check(what)
        have, meta = partial.resume_point(transport.url, expected_size)
        if have == expected_size and meta is not None:
            if hasher.size != have:
                hasher.restart(partial.path, have)
            return meta.validators
        try:
            stream = transport.open_range(remote or name, have,
                                          meta.validators if meta else None)
        except TransferError as exc:
            last = exc
            continue
        except RangeNotSatisfiable as exc:
            partial.discard()
            raise ChangedOnServerError(
                f"{what}: the server has fewer bytes than the {expected_size} read at sync "
                f"({exc}); the file changed on the server, run `ccfcache sync`") from None
        try:
            now = stream.validators
            if seen is not None and seen.etag and now.etag and now.etag != seen.etag:
                partial.discard()
                raise ChangedOnServerError(
                    f"{what}: the file changed on the server since the last sync (ETag "
                    f"{now.etag} != {seen.etag}); run `ccfcache sync`")
            if stream.start and meta is not None and not _same_or_unsaid(meta.validators, now):
                partial.discard()  # a server that ignored If-Range: never join the bytes
                last = FetchError(f"{what}: the server resumed another state of the file")
                continue
            try:
                if stream.start == 0:
                    meta = PartialMeta(transport.url, stream.url, expected_size,
                                       Validators(now.etag, now.last_modified, expected_size))
                    handle = partial.begin(meta)
                    hasher.restart()
                else:
                    handle = partial.append()
                    if hasher.size != stream.start:  # a partial left by another run
                        hasher.restart(partial.path, stream.start)
            except OSError as exc:
                raise disk_error(name, partial.path, exc) from exc
            _copy(stream, handle, partial, expected_size, hasher, floor, what)
        except TransferError as exc:
            last = exc
            continue
        finally:
            stream.close()
        final = partial.size()
        if final == expected_size:
            assert meta is not None  # a resumed stream has its partial's validators
            return meta.validators
        last = FetchError(f"{what}: got {final} of {expected_size} bytes")
    tries = policy.retries + 1
    raise type(last or FetchError(what))(f"{last} (gave up after {tries} tries)")


def _same_or_unsaid(kept: Validators, now: Validators) -> bool:
    """True unless the server says outright that it serves another state of the file."""
    if kept.etag and now.etag:
        return kept.etag == now.etag
    if kept.last_modified and now.last_modified:
        return kept.last_modified == now.last_modified
    return True


def _copy(stream: RangeStream, handle: BinaryIO, partial: Partial, expected_size: int,
          hasher: StreamHasher, floor: RateFloor, what: str) -> None:
    """Append the stream to the partial, hashing as it goes; never past `expected_size`."""
    written = stream.start
    watch = RateWatch(floor)
    with handle:
        writeback = Writeback(handle.fileno(), written)
        for chunk in stream.chunks():  # as received, so a cut keeps its bytes
            check(what)  # interrupted: stop before writing, the partial stays resumable
            written += len(chunk)
            if written > expected_size:
                handle.close()
                partial.discard()
                raise ChangedOnServerError(
                    f"{what}: more bytes than the listed {expected_size}; the file changed "
                    "on the server, run sync")
            try:
                write_all(handle, chunk)
            except OSError as exc:
                raise disk_error(what.removeprefix("download of "), partial.path, exc) from exc
            writeback.advance(len(chunk))
            hasher.update(chunk)  # hashed while streaming
            if floor.rate:
                watch.advance(len(chunk), what)
        writeback.finish()  # the last bytes too: the fsync before publishing follows
