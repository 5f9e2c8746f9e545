"""Parse and validate constituent names (`SCOPE_TYPEID_IIII.CCF`); nothing else becomes a path.

A listing entry is a constituent only if it matches the strict pattern below. Anything else
(other extensions, sub-folders, `..`, encoded separators, over-long names) is rejected with
`InvalidName`, so no server-provided string can ever name a file outside the cache.
"""

from __future__ import annotations

import functools
import re
from collections import namedtuple

from .errors import InvalidName

SCOPES = ("XMM", "OM", "XRT1", "XRT2", "XRT3", "EMOS1", "EMOS2", "EPN", "RGS1", "RGS2", "ERM")

_NAME_RE = re.compile(
    r"(?P<scope>[A-Z][A-Z0-9]{0,4})_(?P<typeid>[A-Z][A-Z0-9]{0,16})_(?P<issue>[0-9]{4})\.CCF"
)


# collections.namedtuple rather than typing.NamedTuple: the warm `ccfcache path` imports this
# module, and typing costs it 5 ms
class ConstituentName(namedtuple("ConstituentName", "scope typeid issue")):
    """The three parts of a constituent name: scope (str), typeid (str), issue (int)."""

    __slots__ = ()

    @property
    def name(self) -> str:
        """The canonical (upper-case) file name."""
        return f"{self.scope}_{self.typeid}_{self.issue:04d}.CCF"


def parse_name(text: str) -> ConstituentName:
    """Split a constituent file name into scope, type and issue; raise InvalidName otherwise.

    Names are case-insensitive (as in the CCF documentation); the result is upper case.
    Only known scopes are accepted.
    """
    if not isinstance(text, str) or len(text) > 40 or not text.isascii():
        raise InvalidName(f"not a constituent name: {text!r}")
    return _parse_text(text)


def parse_name_once(text: str) -> ConstituentName:
    """`parse_name` without its memo, for names parsed once per run (a listing's: 100,000
    names held 28 MiB of memo through a sync)."""
    if not isinstance(text, str) or len(text) > 40 or not text.isascii():
        raise InvalidName(f"not a constituent name: {text!r}")
    return _parse_text.__wrapped__(text)


@functools.lru_cache(maxsize=1 << 17)  # a warm CIF's walk parses every listed name
def _parse_text(text: str) -> ConstituentName:
    match = _NAME_RE.fullmatch(text.upper())
    if match is None or match["scope"] not in SCOPES:
        raise InvalidName(f"not a constituent name (SCOPE_TYPEID_IIII.CCF): {text!r}")
    return ConstituentName(match["scope"], match["typeid"], int(match["issue"]))


def canonical_name(text: str) -> str:
    """The canonical upper-case name for `text`, accepting a missing `.CCF` suffix."""
    candidate = text if text.upper().endswith(".CCF") else f"{text}.CCF"
    return parse_name(candidate).name


