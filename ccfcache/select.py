"""Pick the constituents of a CIF from index rows with cifbuild's rule (pure: no I/O, no clock).

For each (SCOPE, TYPEID) group among rows of the category: keep the rows with
VALDATE <= observation date, SUBDATE <= analysis date and EVALDATE absent or
>= observation date (all inclusive), then take the highest ISSUE. When one name has several
contents (a file modified in place on the server), the greatest SUBDATE wins, then the
greatest DATE, then a deterministic tie-break on `content_id` / `xxh3`.
Dates are normalised 19-character strings and are compared as strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .dates import normalise_date

Row = Mapping[str, Any]


@dataclass
class Selection:
    """The selected rows, sorted by (scope, typeid) as in a CIF, and what was worth a warning."""

    rows: list[Any] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _token(value: object) -> tuple[int, int, str]:
    """A sort key for an optional content id or hash, comparable across types."""
    if value is None:
        return (0, 0, "")
    if isinstance(value, int) and not isinstance(value, bool):
        return (1, value, "")
    return (2, 0, str(value))


def preference_key(row: Row) -> tuple[Any, ...]:
    """How candidates of one group are ranked: the greatest key wins."""
    return (
        int(row["issue"]),
        row["subdate"],
        row.get("date") or "",
        _token(row.get("content_id")),
        _token(row.get("xxh3")),
        str(row.get("name") or ""),
    )


def is_candidate(row: Row, obs_date: str, analysis_date: str) -> bool:
    """True when `row` is valid for the observation date and released by the analysis date."""
    evaldate = row.get("evaldate")
    return bool(
        row["valdate"] <= obs_date
        and row["subdate"] <= analysis_date
        and (evaldate is None or _blank(evaldate) or evaldate >= obs_date)
    )


def _unusable(row: Row) -> str | None:
    """Why a row cannot take part in the selection, or None."""
    header_error = row.get("header_error")
    if not _blank(header_error):
        return str(header_error)
    for key in ("scope", "typeid", "issue", "valdate", "subdate"):
        if _blank(row.get(key)):
            return f"no {key.upper()}"
    return None


def _dates(obs_date: str, analysis_date: str) -> tuple[str, str, list[str]]:
    """The normalised dates (InvalidDate for a bad one) and the warning an analysis date
    before the observation date deserves."""
    obs = normalise_date(obs_date)
    analysis = normalise_date(analysis_date)
    warnings: list[str] = []
    if analysis < obs:
        warnings.append(
            f"the analysis date {analysis} is earlier than the observation date {obs}: "
            "calibration released after the analysis date is not used"
        )
    return obs, analysis, warnings


def select_constituents(
    rows: Iterable[Row],
    obs_date: str,
    analysis_date: str,
    *,
    category: str = "XMMCCF",
    ignore_category: bool = False,
) -> Selection:
    """Apply cifbuild's rule to index rows; return the chosen rows and the warnings.

    Rows are passed through untouched (same objects). Rows with a `header_error`, or lacking
    a key the rule needs, are skipped with a warning naming them. A group of the category with
    no candidate is left out with a warning. Raises InvalidDate for a malformed date argument.
    """
    obs, analysis, warnings = _dates(obs_date, analysis_date)
    wanted = category.strip()
    best: dict[tuple[str, str], tuple[tuple[Any, ...], Row] | None] = {}
    for row in rows:
        broken = not _blank(row.get("header_error"))  # its category is unknown: always say so
        if not broken and not ignore_category and str(row.get("category") or "").strip() != wanted:
            continue
        problem = _unusable(row)
        if problem is not None:
            warnings.append(f"skipping {row.get('name') or '(unnamed constituent)'}: {problem}")
            continue
        group = (row["scope"], row["typeid"])
        current = best.get(group)
        if not is_candidate(row, obs, analysis):
            if group not in best:
                best[group] = None
            continue
        key = preference_key(row)
        if current is None or key > current[0]:
            best[group] = (key, row)
    chosen = []
    for group in sorted(best):
        entry = best[group]
        if entry is None:
            warnings.append(
                f"no constituent of {group[0]}_{group[1]} is valid for observation date {obs} "
                f"and analysis date {analysis}: left out of the CIF"
            )
        else:
            chosen.append(entry[1])
    return Selection(rows=chosen, warnings=warnings)


@dataclass
class Ranking:
    """`select_constituents` prepared once for any dates: the same rows filtered and grouped
    as it does, each group's rows ranked by `preference_key`, greatest first. `select` then
    takes per group the first row valid for the dates, which is the greatest valid one:
    the same rows and warnings as `select_constituents(rows, ...)`, in microseconds per
    group instead of a pass over every row (a pipeline builds CIFs for many dates)."""

    skipped: list[str]  # the warnings about rows that cannot take part, in row order
    # per group, sorted: (VALDATE, SUBDATE, EVALDATE or None when blank, row) by rank
    groups: list[tuple[tuple[str, str], list[tuple[Any, Any, Any, Row]]]]

    @classmethod
    def of(cls, rows: Iterable[Row], *, category: str = "XMMCCF",
           ignore_category: bool = False) -> Ranking:
        wanted = category.strip()
        skipped: list[str] = []
        members: dict[tuple[str, str], list[Row]] = {}
        for row in rows:
            broken = not _blank(row.get("header_error"))
            if not broken and not ignore_category and \
                    str(row.get("category") or "").strip() != wanted:
                continue
            problem = _unusable(row)
            if problem is not None:
                skipped.append(f"skipping {row.get('name') or '(unnamed constituent)'}: "
                               f"{problem}")
                continue
            members.setdefault((row["scope"], row["typeid"]), []).append(row)
        groups = []
        for group in sorted(members):
            ranked = sorted(members[group], key=preference_key, reverse=True)  # stable: ties
            groups.append((group, [(                                     # keep the row order
                row["valdate"], row["subdate"],
                None if _blank(row.get("evaldate")) else row.get("evaldate"), row)
                for row in ranked]))
        return cls(skipped, groups)

    def select(self, obs_date: str, analysis_date: str) -> Selection:
        """What `select_constituents` answers for these dates (InvalidDate for a bad one)."""
        obs, analysis, warnings = _dates(obs_date, analysis_date)
        warnings.extend(self.skipped)
        chosen = []
        for group, ranked in self.groups:
            for valdate, subdate, evaldate, row in ranked:
                if valdate <= obs and subdate <= analysis and (evaldate is None
                                                               or evaldate >= obs):
                    chosen.append(row)
                    break
            else:
                warnings.append(
                    f"no constituent of {group[0]}_{group[1]} is valid for observation date "
                    f"{obs} and analysis date {analysis}: left out of the CIF"
                )
        return Selection(rows=chosen, warnings=warnings)


def is_mif_candidate(row: Row, obs_date: str, analysis_date: str) -> bool:
    """cifbuild's rule as documented for a Master Index File: VALDATE <= observation date
    and SUBDATE <= analysis date; no EVALDATE test (see docs/cif.md)."""
    return bool(row["valdate"] <= obs_date and row["subdate"] <= analysis_date)


def select_from_mif(rows: Iterable[Row], obs_date: str, analysis_date: str) -> Selection:
    """The documented MIF branch of cifbuild (`withmasterindexset=yes`): for each
    (SCOPE, TYPEID) of the MIF's rows, the highest ISSUE among rows with VALDATE <=
    observation date and SUBDATE <= analysis date. A MIF has no CATEGORY column: every row
    takes part. Ties (one name twice) are broken as in `select_constituents`."""
    obs = normalise_date(obs_date)
    analysis = normalise_date(analysis_date)
    best: dict[tuple[str, str], tuple[tuple[Any, ...], Row] | None] = {}
    warnings: list[str] = []
    for row in rows:
        problem = _unusable(row)
        if problem is not None:
            warnings.append(f"skipping {row.get('name') or '(unnamed row)'}: {problem}")
            continue
        group = (row["scope"], row["typeid"])
        best.setdefault(group, None)
        if not is_mif_candidate(row, obs, analysis):
            continue
        key = preference_key(row)
        current = best[group]
        if current is None or key > current[0]:
            best[group] = (key, row)
    chosen = []
    for group in sorted(best):
        entry = best[group]
        if entry is None:
            warnings.append(f"no row of {group[0]}_{group[1]} in the MIF is valid for "
                            f"observation date {obs} and analysis date {analysis}")
        else:
            chosen.append(entry[1])
    return Selection(rows=chosen, warnings=warnings)
