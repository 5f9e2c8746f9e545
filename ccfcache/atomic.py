"""Atomic file writes, the one way the package writes a small file in place: a complete
temporary file (a name unique across hosts sharing the folder), then renamed over the target
or, for a write-once file, hard-linked to it. No reader and no kill -9 ever sees part of it.

(Downloads are published by the store, which hashes and checks them first: `BlobStore`.)
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def temporary_name(path: Path, folder: Path | None = None) -> Path:
    """A unique hidden temporary name for `path`, in `folder` (default: the same folder)."""
    return (folder or path.parent) / f".{path.name}.{uuid.uuid4().hex}.tmp"


def write_atomic(path: Path, data: bytes, *, mode: int | None = None, once: bool = False,
                 fsync: bool = False, folder: Path | None = None) -> bool:
    """Write `data` to `path` atomically; returns False when `once` and `path` already
    existed (it is left as it was).

    `once`: a write-once file (the first writer wins, by `link()`; on filesystems without
    hard links, by a rename when still absent). `mode`: the file's permissions (e.g. 0o444).
    `fsync`: the bytes and the name survive a power cut. `folder`: where the temporary file
    goes (the same filesystem as `path`). OSError propagates; the temporary never stays.
    """
    tmp = temporary_name(path, folder)
    try:
        descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            if fsync:
                stream.flush()
                os.fsync(stream.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        if once:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            except OSError:
                if path.exists():  # filesystems without hard links
                    return False
                os.replace(tmp, path)
        else:
            os.replace(tmp, path)
        if fsync:
            fsync_folder(path.parent)
        return True
    finally:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass


def fsync_folder(path: Path) -> None:
    """fsync a folder so that a rename or link in it is durable (ignored where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
