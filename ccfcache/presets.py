"""Named sources, usable wherever a source URL is (`--source heasarc`, `Cache(sources=[...])`,
`sources` in config.json): ESA's two folders, HEASARC's two HTTPS copies and HEASARC's S3 copy.

A preset is resolved to its URL when the source is configured, so the index and config.json
keep URLs. A site may point a name elsewhere (its own mirror or proxy) with `presets` in
config.json, or for one process with $CCFCACHE_PRESET_<NAME> (`-` written `_`): config.py
reads both into `Settings.presets`, which the caller passes here as `overrides`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .errors import UsageError

ESA_FULL = "https://sasdev-xmm.esac.esa.int/pub/ccf/constituents/"
ESA_VALID = "https://sasdev-xmm.esac.esa.int/pub/ccf/valid_constituents/"

PRESETS: dict[str, str] = {
    "esa": ESA_FULL,  # every issue ever published
    "esa-valid": ESA_VALID,  # the issues currently valid
    "heasarc": "https://heasarc.gsfc.nasa.gov/FTP/xmm/data/CCF/",  # the full history
    "heasarc-caldb": "https://heasarc.gsfc.nasa.gov/FTP/caldb/data/xmm/ccf/",
    "heasarc-s3": "s3://nasa-heasarc/xmm/data/CCF/",  # HEASARC's copy in AWS (public)
}


def is_preset_name(text: str) -> bool:
    """True for something shaped like a preset name (no scheme, no path separator)."""
    return bool(text) and "/" not in text and ":" not in text and "\\" not in text


def resolve_source(text: str, overrides: Mapping[str, object] | None = None) -> str:
    """The URL a source names: a preset's URL (`overrides` first: the site's and this
    process's, see config.py), or `text` itself when it is not a preset name. A bare word
    that is neither a known preset nor an existing folder is a UsageError naming them."""
    name = text.strip()
    if not is_preset_name(name):
        return text
    key = name.lower()
    for spelling in (key, key.replace("_", "-")):  # $CCFCACHE_PRESET_* names use '_' for '-'
        if overrides and isinstance(overrides.get(spelling), str):
            return str(overrides[spelling])
    if key in PRESETS:
        return PRESETS[key]
    if os.path.exists(name):  # a folder in the working directory that looks like a word
        return text
    known = ", ".join(sorted({*PRESETS, *(overrides or {})}))
    raise UsageError(f"unknown source {name!r}: give a URL, a folder, or a preset ({known})")
