"""FITS card images exactly as astropy writes them, for the kinds of card a CIF holds, without
importing astropy (its import was most of a warm `ccfcache cif` in a new process).

`card_image` formats a keyword of at most 8 characters with a string, integer or boolean
value and an optional comment, a long string value as CONTINUE cards (OGIP long strings, as
astropy splits them), and a short HISTORY or COMMENT card. For anything else it answers None
and the caller asks astropy (`cif._card_image`). tests/test_cards.py compares both on random
cards.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from typing import Any

CARD = 80
KEYWORD = 8
_PRINTABLE = re.compile(r"[ -~]*\Z")  # what astropy accepts in a value or a comment
_COMMENTARY = ("HISTORY", "COMMENT")
_KEYWORD_RE = re.compile(r"[A-Z0-9_-]{1,8}\Z")
_LONG_VALUE = 67  # characters of a long string per card (astropy's value_length)
_LONG_COMMENT = 64  # of a long card's comment per CONTINUE card


def card_image(keyword: str, value: Any, comment: str | None = None) -> str | None:
    """The 80-character card image(s) astropy's `fits.Card(keyword, value, comment).image`
    gives, or None when the card is not of a kind formatted here."""
    if not _KEYWORD_RE.match(keyword):
        return None
    if comment is not None and (type(comment) is not str or not _PRINTABLE.match(comment)):
        return None
    if comment is not None and not comment.rstrip():
        comment = None  # astropy reads a blank comment as none (strip_header_whitespace)
    if keyword in _COMMENTARY:
        if comment or type(value) is not str or not _PRINTABLE.match(value) \
                or len(value) > CARD - KEYWORD:
            return None
        return f"{keyword:{KEYWORD}}{value}".ljust(CARD)
    if type(value) is bool:
        text = f"{'T' if value else 'F':>20}"
    elif type(value) is int:
        text = f"{value:>20d}"
    elif type(value) is str:
        if not _PRINTABLE.match(value):
            return None
        text = _string_value(value)
    else:
        return None
    image = f"{keyword:{KEYWORD}}= {text}" + (f" / {comment}" if comment else "")
    if len(image) <= CARD:
        return image.ljust(CARD)
    if type(value) is str and len(text) > CARD - KEYWORD - 2:
        return _long_image(keyword, value, comment)
    return None  # astropy would cut the comment, with a warning


def _string_value(value: str) -> str:
    """A string value as astropy writes it: quoted, inner quotes doubled, at least 8
    characters between the quotes, in at least 20 columns."""
    if value == "":
        return "''"
    quoted = "'" + value.replace("'", "''").ljust(8) + "'"
    return quoted.ljust(20)


def _long_image(keyword: str, value: str, comment: str | None) -> str:
    """A long string value (and its comment) as CONTINUE cards, as astropy splits them."""
    words = _words_group(value.replace("'", "''"), _LONG_VALUE)
    output = []
    for index, word in enumerate(words):
        head = f"{keyword:{KEYWORD}}= " if index == 0 else "CONTINUE  "
        last = not comment and index == len(words) - 1
        output.append(f"{head}'{word}{'' if last else '&'}'".ljust(CARD))
    if comment:
        parts = _words_group(comment.rstrip(), _LONG_COMMENT)
        for index, part in enumerate(parts):
            head = "CONTINUE  '' / " if index == len(parts) - 1 else "CONTINUE  '&' / "
            output.append(f"{head}{part}".ljust(CARD))
    return "".join(output)


def _words_group(text: str, width: int) -> list[str]:
    """astropy's `_words_group`: parts of at most `width` characters cut after a blank, a
    word longer than `width` cut in the middle."""
    blanks = [index for index, char in enumerate(text + " ") if char == " "]
    size = len(text)
    words = []
    offset = start = 0
    while True:
        found = bisect_left(blanks, width + offset)  # the first blank at or past the width
        offset = blanks[found - 1] + 1 if found > 0 else -1
        if offset <= start:  # one word longer than the width: cut in the middle
            offset = min(start + width, size)
        words.append(text[start:offset])
        if offset >= size:
            return words
        start = offset
