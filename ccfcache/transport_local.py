"""The local folder transport: an rsync mirror or a `file://` URL. The same protocol as the
network transports, so the same download loop resumes, caps and verifies its copies."""

from __future__ import annotations

import email.utils
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from .errors import FetchError, ListingError
from .headers import BLOCK, MAX_HEADER_BLOCKS
from .listing import Listing, list_directory
from .retry import Policy
from .transport import Head, ListingValidators, NotModified, Validators, header_end

CHUNK = 1 << 20


def file_validators(st: os.stat_result) -> Validators:
    """A local file's state, in the same terms a web server would give."""
    return Validators(
        etag=f'"{st.st_size:x}-{st.st_mtime_ns:x}"',
        last_modified=email.utils.formatdate(st.st_mtime, usegmt=True),
        size=st.st_size,
    )


class LocalStream:
    """A local file's bytes from `start`."""

    def __init__(self, path: Path, handle: BinaryIO, start: int, validators: Validators) -> None:
        self.url = str(path)
        self.start = start
        self.validators = validators
        self._handle = handle

    def chunks(self) -> Iterator[bytes]:
        while True:
            try:
                chunk = self._handle.read(CHUNK)
            except OSError as exc:
                raise FetchError(f"cannot copy {self.url}: {exc.strerror or exc}") from exc
            if not chunk:
                return
            yield chunk

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> LocalStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalTransport:
    """A local folder of constituents (an rsync mirror)."""

    def __init__(self, url: str) -> None:
        self.url = url
        path = unquote(urlsplit(url).path) if url.startswith("file://") else url
        self.folder = Path(path).expanduser().absolute()
        self.policy = Policy(retries=1, backoff=0.05)

    def listing(self, known: ListingValidators | None = None) -> Listing | NotModified:
        if not self.folder.is_dir():
            raise ListingError(f"source folder not found: {self.folder}")
        return list_directory(self.folder, self.url)

    def _file(self, name: str) -> Path:
        return self.folder / name  # name is validated by names.parse_name upstream

    def read_head(self, name: str) -> Head:
        path = self._file(name)
        try:
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                data = b""
                while True:
                    block = handle.read(BLOCK)
                    data += block
                    if not block or header_end(data) is not None:
                        break
                    if len(data) >= MAX_HEADER_BLOCKS * BLOCK:
                        break
                mtime = os.fstat(handle.fileno()).st_mtime
        except OSError as exc:
            raise FetchError(f"cannot read {path}: {exc.strerror}") from exc
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(mtime))
        return Head(data, size, None, stamp)

    def open_range(self, name: str, start: int, since: Validators | None) -> LocalStream:
        path = self._file(name)
        try:
            handle = open(path, "rb")
        except OSError as exc:
            raise FetchError(f"cannot copy {path}: {exc.strerror or exc}") from exc
        try:
            now = file_validators(os.fstat(handle.fileno()))
            if start and since is not None and since.same_file(now) and start <= (now.size or 0):
                handle.seek(start)
            else:
                start = 0
        except OSError as exc:
            handle.close()
            raise FetchError(f"cannot copy {path}: {exc.strerror or exc}") from exc
        return LocalStream(path, handle, start, now)

    def close(self) -> None:
        pass
