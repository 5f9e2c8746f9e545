"""Write and read the CCF Index File (CIF, `ccf.cif`) in exactly cifbuild's format."""

from __future__ import annotations

import functools
import os
import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from typing import Any, NamedTuple, cast

from .dates import normalise_date
from .errors import InvalidCif, SelectionError


class CifColumn(NamedTuple):
    """One column of the CALINDEX table: FITS name, TFORM, unit (None when none)."""

    name: str
    tform: str
    unit: str | None


_DATE_UNIT = "yyyy:dd:mmZhh:mm:ss"

CIF_COLUMNS: tuple[CifColumn, ...] = (
    CifColumn("TELESCOP", "4A", None),
    CifColumn("SCOPE", "6A", None),
    CifColumn("TYPEID", "32A", None),
    CifColumn("ISSUE", "I", None),
    CifColumn("VALDATE", "19A", _DATE_UNIT),
    CifColumn("VALDATE-END", "19A", _DATE_UNIT),
    CifColumn("FNAME", "256A", None),
    CifColumn("DATE", "19A", _DATE_UNIT),
    CifColumn("FSIZE", "J", "byte"),
    CifColumn("SUBDATE", "19A", _DATE_UNIT),
    CifColumn("EXTSEQU", "32A", None),
    CifColumn("EXTSEQID", "256A", None),
    CifColumn("MD5", "32A", None),
    CifColumn("CREATOR", "64A", None),
)

# The TTYPE comments cifbuild writes.
_TTYPE_COMMENTS = {
    "TELESCOP": "Telescope",
    "SCOPE": "Calibration scope",
    "TYPEID": "Calibration data type",
    "ISSUE": "Constituent issue number",
    "VALDATE": "Start of validity",
    "VALDATE-END": "End of validity",
    "FNAME": "Constituent file path",
    "DATE": "Creation date",
    "FSIZE": "Constituent size",
    "SUBDATE": "Submission date",
    "EXTSEQU": "Extension sequence",
    "EXTSEQID": "Extension sequence identifiers",
    "MD5": "MD5 digital signature",
    "CREATOR": "File creator",
}
_TFORM_COMMENTS = {
    "A": "data format of field: ASCII Character",
    "I": "data format of field: 2-byte INTEGER",
    "J": "data format of field: 4-byte INTEGER",
}
# The structural comments CFITSIO (hence cifbuild) writes.
_TABLE_COMMENTS = {
    "XTENSION": "binary table extension",
    "BITPIX": "8-bit bytes",
    "NAXIS": "2-dimensional binary table",
    "NAXIS1": "width of table in bytes",
    "NAXIS2": "number of rows in table",
    "PCOUNT": "size of special data area",
    "GCOUNT": "one data group (required keyword)",
    "TFIELDS": "number of fields in each row",
}
_PRIMARY_COMMENTS = {
    "SIMPLE": "file does conform to FITS standard",
    "BITPIX": "number of bits per data pixel",
    "NAXIS": "number of data axes",
    "EXTEND": "FITS dataset may contain extensions",
}

# CIF column -> key of a row dict (FNAME is built from `name`).
_ROW_KEYS = {
    "TELESCOP": "telescop",
    "SCOPE": "scope",
    "TYPEID": "typeid",
    "ISSUE": "issue",
    "VALDATE": "valdate",
    "VALDATE-END": "evaldate",
    "FNAME": "name",
    "DATE": "date",
    "FSIZE": "size",
    "SUBDATE": "subdate",
    "EXTSEQU": "extsequ",
    "EXTSEQID": "extseqid",
    "MD5": "md5",
    "CREATOR": "creator",
}
_INT_RANGES = {"ISSUE": (-(2**15), 2**15 - 1), "FSIZE": (-(2**31), 2**31 - 1)}


@dataclass
class CifData:
    """The content of a CIF: its rows (lower-case keys) and CALINDEX header dates."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    obs_date: str | None = None
    analysis_date: str | None = None
    category: str | None = None
    path: Path | None = None


def _version() -> str:
    """ccfcache's version (`ccfcache.version`, which tests keep equal to the installed
    package's: importlib.metadata, which scans sys.path, was a tenth of a warm CIF's
    start-up)."""
    from .version import __version__

    return __version__


def default_creator() -> str:
    """The CREATOR string, `ccfcache (ccfcache-<version>)`, like cifbuild's."""
    return f"ccfcache (ccfcache-{_version()})"


def xproc_string(parameters: Mapping[str, str], creator: str) -> str:
    """The XPROC0 value: `cifbuild name=value ... # (ccfcache-x.y)` as cifbuild records it."""
    words = [f"{key}={value}" for key, value in parameters.items()]
    _, _, tag = creator.partition(" ")
    return " ".join(["cifbuild", *words, "#", tag or creator])


def _width(tform: str) -> int:
    return int(tform[:-1])


# (column, row key, integer range or None, text width (0 for an integer column)), computed once
_COLUMN_SPECS: tuple[tuple[str, str, tuple[int, int] | None, int], ...] = tuple(
    (column.name, _ROW_KEYS[column.name], _INT_RANGES.get(column.name),
     0 if column.name in _INT_RANGES else _width(column.tform))
    for column in CIF_COLUMNS
)


_HEADER_TEXT = frozenset({"TELESCOP", "SCOPE", "TYPEID", "EXTSEQU", "EXTSEQID", "CREATOR"})


def _short(text: str, limit: int = 60) -> str:
    """A value quoted in a message, cut to `limit` characters (messages stay one short line)."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _column_values(rows: list[Mapping[str, Any]], fullpath_dir: str | None,
                   warnings: list[str] | None = None) -> dict[str, list[Any]]:
    """The validated values of every column; raise SelectionError naming a bad value.

    Checked a column at a time (C-level `all`/`min`/`max`/`isascii` over each column); when a
    column fails, `_column_values_row_by_row` finds the first bad row and names it, or cuts a
    header value too wide for its column (with a warning)."""
    values: dict[str, list[Any]] = {}
    # typed rows (dataclasses, e.g. the index's Version) have their fields as attributes:
    # a column is read at C speed (attrgetter) instead of a mapping lookup per value
    kinds = {type(row) for row in rows}
    fields = [getattr(kind, "__dataclass_fields__", None) for kind in kinds]
    typed = all(found is not None for found in fields)
    for name, key, limits, width in _COLUMN_SPECS:
        if typed and all(key in found for found in fields if found is not None):
            column = list(map(attrgetter(key), rows))
        elif key != "evaldate" and not all(key in row for row in rows):
            return _column_values_row_by_row(rows, fullpath_dir, warnings)
        else:
            column = [row.get(key) for row in rows]
        if limits is not None:
            if column and not all(type(v) is int for v in column):
                return _column_values_row_by_row(rows, fullpath_dir, warnings)
            ints = cast("list[int]", column)  # every value is an int: checked just above
            if ints and not (limits[0] <= min(ints) and max(ints) <= limits[1]):
                return _column_values_row_by_row(rows, fullpath_dir, warnings)
            values[name] = column
            continue
        texts = ["" if v is None else v for v in column]
        if not all(type(v) is str for v in texts):
            return _column_values_row_by_row(rows, fullpath_dir, warnings)
        if name == "FNAME" and fullpath_dir is not None:
            texts = [os.path.join(fullpath_dir, text) for text in texts]
        if texts and (max(map(len, texts)) > width or not "".join(texts).isascii()):
            return _column_values_row_by_row(rows, fullpath_dir, warnings)
        values[name] = texts
    return values


def _column_values_row_by_row(rows: list[Mapping[str, Any]], fullpath_dir: str | None,
                              warnings: list[str] | None = None) -> dict[str, list[Any]]:
    """`_column_values` a row at a time: raises SelectionError at the first bad value.

    A header value wider than its column (a 70-character CREATOR in 64A) is cut to the column
    width, and a non-ASCII character becomes '?', as cifbuild's FITS writer does, with a
    warning: one odd header must not stop every CIF that selects the file. Only FNAME, which
    SAS opens, and the values ccfcache computes (MD5, normalised dates) are never cut: a
    value too long for them is an error."""
    values: dict[str, list[Any]] = {column.name: [] for column in CIF_COLUMNS}
    for number, row in enumerate(rows, start=1):
        for name, key, limits, width in _COLUMN_SPECS:
            if key not in row and key != "evaldate":
                raise SelectionError(f"{_label(number, row)} has no {key!r} for column {name}")
            value = row.get(key)
            if limits is not None:
                values[name].append(_checked_int(value, limits, name, number, row))
                continue
            text = "" if value is None else value
            if not isinstance(text, str):
                raise SelectionError(f"{_label(number, row)}: {name} is not a string: "
                                     f"{_short(repr(value))}")
            if name == "FNAME" and fullpath_dir is not None:
                text = os.path.join(fullpath_dir, text)
            if len(text) > width or not text.isascii():
                if name not in _HEADER_TEXT:
                    problem = (f"is not ASCII: {_short(text)}" if not text.isascii() else
                               f"is longer than {width} characters (TFORM {width}A): "
                               f"{_short(text)}")
                    raise SelectionError(f"{_label(number, row)}: {name} {problem}")
                fixed = text.encode("ascii", "replace").decode("ascii")[:width]
                if warnings is not None:
                    warnings.append(f"{row.get('name', 'unnamed')}: {name} {_short(text)} "
                                    f"truncated to {width} ASCII characters (TFORM {width}A)")
                text = fixed
            values[name].append(text)
    return values


def _label(number: int, row: Mapping[str, Any]) -> str:
    return f"CIF row {number} ({row.get('name', 'unnamed')})"


def _checked_int(value: Any, limits: tuple[int, int], name: str, number: int,
                 row: Mapping[str, Any]) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise SelectionError(f"{_label(number, row)}: {name} is not an integer: {value!r}")
    low, high = limits
    if not low <= value <= high:
        tform = next(c.tform for c in CIF_COLUMNS if c.name == name)
        raise SelectionError(f"{_label(number, row)}: {name} {value} does not fit TFORM {tform}")
    return value


_BLOCK = 2880  # FITS block size
# one CALINDEX row: big-endian integers, fixed-width byte strings padded with NULs (as numpy
# and astropy lay it out; struct, so that a warm build imports neither)
_RECORD = struct.Struct(">" + "".join("h" if c.tform == "I" else "i" if c.tform == "J"
                                      else f"{_width(c.tform)}s" for c in CIF_COLUMNS))


def _padded(data: bytes, fill: bytes = b"\0") -> bytes:
    return data + fill * (-len(data) % _BLOCK)


@functools.lru_cache(maxsize=256)
def _card_image(card: tuple[Any, ...]) -> str:
    """One card (keyword, value[, comment]) as astropy formats it, CONTINUE cards included:
    by `cards.card_image` for the kinds of card a CIF holds, else by astropy. Cached: most
    cards are the same in every CIF."""
    from .cards import card_image

    image = card_image(*card)
    if image is not None:
        return image
    from astropy.io import fits

    return str(fits.Card(*card).image)


def _header_bytes(cards: list[tuple[Any, ...]]) -> bytes:
    """One FITS header: the cards, END, padded with blanks to whole blocks."""
    text = "".join(_card_image(card) for card in cards) + "END".ljust(80)
    return _padded(text.encode("ascii"), b" ")


def _table_header(count: int, header_values: dict[str, str]) -> bytes:
    """The CALINDEX header exactly as astropy's BinTableHDU (hence cifbuild/CFITSIO) writes it."""
    row_bytes = _RECORD.size
    structure = {"XTENSION": "BINTABLE", "BITPIX": 8, "NAXIS": 2, "NAXIS1": row_bytes,
                 "NAXIS2": count, "PCOUNT": 0, "GCOUNT": 1, "TFIELDS": len(CIF_COLUMNS)}
    cards: list[tuple[Any, ...]] = [(key, value, _TABLE_COMMENTS[key])
                                    for key, value in structure.items()]
    for index, column in enumerate(CIF_COLUMNS, start=1):
        cards.append((f"TTYPE{index}", column.name, _TTYPE_COMMENTS[column.name]))
        cards.append((f"TFORM{index}", column.tform, _TFORM_COMMENTS[column.tform[-1]]))
        if column.unit is not None:
            cards.append((f"TUNIT{index}", column.unit, "physical unit of field"))
    cards.append(("EXTNAME", "CALINDEX", "The name of this table"))
    cards += list(header_values.items())
    return _header_bytes(cards)


def row_records(rows: Sequence[Mapping[str, Any]], fullpath_dir: str | None = None,
                warnings: list[str] | None = None) -> list[bytes]:
    """Each row's CALINDEX record, big-endian as FITS lays it out (what `write_cif` writes
    for it: validated, a header value too wide for its column cut, with a warning)."""
    values = _column_values(list(rows), fullpath_dir, warnings)
    columns = [values[column.name] if column.tform in ("I", "J")
               else [text.encode("ascii") for text in values[column.name]]
               for column in CIF_COLUMNS]
    pack = _RECORD.pack
    return [pack(*row) for row in zip(*columns, strict=True)]


def _primary_header(parameters: Mapping[str, str], creator: str, now: datetime | None) -> bytes:
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    structure = {"SIMPLE": True, "BITPIX": 8, "NAXIS": 0, "EXTEND": True}
    cards: list[tuple[Any, ...]] = [(key, value, _PRIMARY_COMMENTS[key])
                                    for key, value in structure.items()]
    cards += [
        ("XPROC0", xproc_string(parameters, creator)),
        ("CREATOR", creator, "name of code that generated this file"),
        ("DATE", moment.strftime("%Y-%m-%dT%H:%M:%S.000"), "creation date"),
        ("LONGSTRN", "OGIP 1.0"),
        ("HISTORY", f"Created by {creator} at {moment.strftime('%Y-%m-%dT%H:%M:%S')}"),
    ]
    return _header_bytes(cards)


STALE_TEMPORARY_S = 3600.0


def _remove_stale_temporaries(path: Path) -> None:
    """Remove temporaries of earlier writes of `path` that were killed (older than an hour,
    so a concurrent writer's file is never touched)."""
    cutoff = time.time() - STALE_TEMPORARY_S
    prefix = f".{path.name}."  # `atomic.temporary_name`: .NAME.<hex>.tmp
    try:  # (a scan of names: pathlib's glob compiled a pattern for every new CIF name)
        with os.scandir(path.parent) as entries:
            leftovers = [entry for entry in entries
                         if entry.name.startswith(prefix) and entry.name.endswith(".tmp")
                         and len(entry.name) >= len(prefix) + 4]
    except OSError:
        return
    for leftover in leftovers:
        try:
            if leftover.is_file(follow_symlinks=False) and leftover.stat(
                    follow_symlinks=False).st_mtime < cutoff:
                os.unlink(leftover.path)
        except OSError:
            pass


def _write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, renamed over it:
    readers and a kill -9 see the old CIF or the new one, never a part. Not fsynced: a CIF is
    derived from the index and rebuilt in milliseconds (the two fsyncs were most of a warm
    build's time); the blobs it names are fsynced before they are published."""
    from .atomic import write_atomic

    _remove_stale_temporaries(path)
    write_atomic(path, data)


def cif_bytes(
    rows: Iterable[Mapping[str, Any]],
    *,
    obs_date: str,
    analysis_date: str,
    category: str = "XMMCCF",
    parameters: Mapping[str, str],
    creator: str | None = None,
    fullpath_dir: str | None = None,
    now: datetime | None = None,
    warnings: list[str] | None = None,
    records: Sequence[bytes] | None = None,
) -> bytes:
    """The bytes of a CIF listing `rows` (in the given order); see `write_cif`."""
    rows = list(rows)
    if records is None:
        records = row_records(rows, fullpath_dir, warnings)
    elif len(records) != len(rows):
        raise ValueError(f"{len(records)} records for {len(rows)} rows")
    header_values = {
        "CATEGORY": category,
        "OBSVDATE": normalise_date(obs_date),
        "ANALDATE": normalise_date(analysis_date),
    }
    # the bytes astropy's HDUList.writeto would write (tests compare), without building HDUs:
    # a warm CIF build spent most of its time there
    return (_primary_header(parameters, creator or default_creator(), now)
            + _table_header(len(rows), header_values) + _padded(b"".join(records)))


def write_cif(
    path: str | os.PathLike[str],
    rows: Iterable[Mapping[str, Any]],
    *,
    obs_date: str,
    analysis_date: str,
    category: str = "XMMCCF",
    parameters: Mapping[str, str],
    creator: str | None = None,
    fullpath_dir: str | None = None,
    now: datetime | None = None,
    warnings: list[str] | None = None,
    records: Sequence[bytes] | None = None,
) -> Path:
    """Write a CIF listing `rows` (in the given order) to `path`, atomically; return the path.

    Rows carry telescop, scope, typeid, issue, valdate, evaldate (None -> empty), name, date,
    size, subdate, extsequ, extseqid, md5 and creator. FNAME is `name`, or
    `os.path.join(fullpath_dir, name)` when `fullpath_dir` is given. `parameters` become the
    XPROC0 record; `now` fixes the DATE keyword (default: the current UTC time).
    Raises SelectionError for a FNAME that does not fit its column, InvalidDate for bad dates;
    other values too wide for their column are cut, with a message appended to `warnings`.
    `records`: the rows' records made before (`row_records`, same `fullpath_dir`), if any.
    """
    target = Path(path)
    data = cif_bytes(rows, obs_date=obs_date, analysis_date=analysis_date, category=category,
                     parameters=parameters, creator=creator, fullpath_dir=fullpath_dir, now=now,
                     warnings=warnings, records=records)
    try:
        _write_atomically(target, data)
    except OSError as error:
        raise SelectionError(f"cannot write the CIF {target}: {error.strerror or error}") from None
    return target


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    return str(value).strip()


def read_cif(path: str | os.PathLike[str]) -> CifData:
    """Read a CIF (or a Master Index File); raise InvalidCif naming the file if it is not one."""
    import warnings

    from astropy.io import fits
    from astropy.utils.exceptions import AstropyWarning

    source = Path(path)
    wanted = [column.name for column in CIF_COLUMNS]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            with fits.open(source, memmap=False, lazy_load_hdus=False) as hdus:
                if "CALINDEX" not in hdus:
                    raise InvalidCif(f"{source} is not a CIF: it has no CALINDEX table")
                table = hdus["CALINDEX"]
                if not isinstance(table, fits.BinTableHDU):
                    raise InvalidCif(f"{source} is not a CIF: CALINDEX is not a binary table")
                present = set(table.columns.names)
                missing = [name for name in wanted if name not in present]
                if missing:
                    raise InvalidCif(
                        f"{source} is not a CIF: CALINDEX lacks column(s) {', '.join(missing)}"
                    )
                header = table.header
                data = table.data
                columns = {name: list(data[name]) for name in wanted} if data is not None else {}
                count = len(data) if data is not None else 0
    except InvalidCif:
        raise
    except FileNotFoundError:
        raise InvalidCif(f"cannot read the CIF {source}: no such file") from None
    except (OSError, ValueError, TypeError, KeyError, IndexError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InvalidCif(f"{source} is not a readable CIF (FITS): {reason}") from None
    rows = []
    for index in range(count):
        fname = _text(columns["FNAME"][index])
        evaldate = _text(columns["VALDATE-END"][index])
        rows.append(
            {
                "name": os.path.basename(fname),
                "fname": fname,
                "telescop": _text(columns["TELESCOP"][index]),
                "scope": _text(columns["SCOPE"][index]),
                "typeid": _text(columns["TYPEID"][index]),
                "issue": int(columns["ISSUE"][index]),
                "valdate": _text(columns["VALDATE"][index]),
                "evaldate": evaldate or None,
                "date": _text(columns["DATE"][index]),
                "size": int(columns["FSIZE"][index]),
                "subdate": _text(columns["SUBDATE"][index]),
                "extsequ": _text(columns["EXTSEQU"][index]),
                "extseqid": _text(columns["EXTSEQID"][index]),
                "md5": _text(columns["MD5"][index]),
                "creator": _text(columns["CREATOR"][index]),
            }
        )

    def keyword(name: str) -> str | None:
        value = header.get(name)
        return _text(value) if value not in (None, "") else None

    return CifData(
        rows=rows,
        obs_date=keyword("OBSVDATE"),
        analysis_date=keyword("ANALDATE"),
        category=keyword("CATEGORY"),
        path=source,
    )
