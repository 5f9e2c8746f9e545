"""Sizes and durations as people write them on the command line ('2G', '30d') and byte counts
as they read them ('1.5 MB'): the one parser of each, pure."""

from __future__ import annotations

import re

from .errors import UsageError

_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", re.IGNORECASE)
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(?:([KMGTP])(I?B)?|(B)?)\s*", re.IGNORECASE)
_POWERS = {"K": 1, "M": 2, "G": 3, "T": 4, "P": 5}


def parse_duration(text: str) -> float:
    """Seconds in '30d', '12h', '90m', '45s', '2w' (a bare number is seconds)."""
    match = _DURATION_RE.fullmatch(text or "")
    if match is None:
        raise UsageError(f"not a duration: {text!r} (use e.g. 30d, 12h, 90m)")
    return float(match[1]) * _DURATION_UNITS[match[2].lower()]


def parse_size(text: str) -> int:
    """Bytes in '2G', '500M', '1.5T', '100K', '2GB', '2GiB' or a bare number (as coreutils:
    K, KiB = 1024; KB = 1000)."""
    match = _SIZE_RE.fullmatch(text or "")
    if match is None:
        raise UsageError(f"not a size: {text!r} (use e.g. 2G, 500M, 100000)")
    number, unit, suffix = float(match[1]), (match[2] or "").upper(), (match[3] or "").upper()
    if not unit:
        return int(number)
    base = 1000 if suffix == "B" else 1024
    return int(number * base ** _POWERS[unit])


def human_bytes(size: float) -> str:
    """1.2 MB, 3.4 GB (decimal units, as download tools show)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"  # pragma: no cover
