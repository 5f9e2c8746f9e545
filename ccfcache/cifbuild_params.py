"""Parse cifbuild's `name=value` parameters for the drop-in `ccfcache cifbuild` command."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .dates import resolve_date
from .errors import InvalidDate, UsageError

# cifbuild's parameters and defaults, in the order cifbuild records them in XPROC0.
DEFAULTS: dict[str, str] = {
    "calindexset": "ccf.cif",
    "withccfpath": "no",
    "usecanonicalname": "no",
    "ccfpath": ".",
    "recurse": "no",
    "fileglob": "*.ccf|*.CCF",
    "fullpath": "no",
    "withobservationdate": "no",
    "observationdate": "now",
    "analysisdate": "now",
    "category": "XMMCCF",
    "ignorecategory": "no",
    "masterindex": "no",
    "withmasterindexset": "no",
    "masterindexset": "ccf.mif",
    "append": "no",
}
_BOOLEANS = {
    "withccfpath",
    "usecanonicalname",
    "recurse",
    "fullpath",
    "withobservationdate",
    "ignorecategory",
    "masterindex",
    "withmasterindexset",
    "append",
}
_TRUE = {"yes", "y", "true", "t"}
_FALSE = {"no", "n", "false", "f"}
_UNSUPPORTED = {
    "masterindex": "building a Master Index File",
    "append": "appending to an existing CIF",
}


@dataclass
class CifbuildParams:
    """cifbuild's parameters, checked and resolved.

    `obs_date` is None when no date was given (`withobservationdate=no`): cifbuild then takes
    the observation date from the ODF (SAS_ODF), or the current time without one.
    `ccfpath` is None unless `withccfpath=yes`. `warnings` lists parameters given but ignored.
    """

    out: Path
    obs_date: str | None
    analysis_date: str
    category: str
    ignore_category: bool
    fullpath: bool
    ccfpath: str | None
    values: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def as_parameters(self) -> dict[str, str]:
        """Every parameter with its value as given (or default), in cifbuild's XPROC0 order."""
        return dict(self.values)


def _boolean(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise UsageError(f"cifbuild parameter {name} must be yes or no, not {value!r}")


def _split(token: str) -> tuple[str, str]:
    name, equals, value = token.partition("=")
    name = name.strip()
    if not equals or not name:
        raise UsageError(f"malformed cifbuild parameter {token!r}: expected name=value")
    if name not in DEFAULTS:
        raise UsageError(f"unknown cifbuild parameter {name!r} (known: {', '.join(DEFAULTS)})")
    return name, value


def _date(name: str, value: str, now: datetime | None) -> str:
    try:
        return resolve_date(value, now=now)
    except InvalidDate as error:
        raise UsageError(f"cifbuild parameter {name}: {error}") from None


def parse_cifbuild_args(args: list[str], *, now: datetime | None = None) -> CifbuildParams:
    """Check cifbuild `name=value` tokens (last one wins) and resolve their dates.

    `now` fixes the current time for `now` dates. Raises UsageError (one line) for an unknown
    parameter, a malformed token, a bad value, or a feature ccfcache does not implement.
    """
    values = dict(DEFAULTS)
    for token in args:
        name, value = _split(token)
        values[name] = value
    flags = {name: _boolean(name, values[name]) for name in _BOOLEANS}
    for name, feature in _UNSUPPORTED.items():
        if flags[name]:
            raise UsageError(f"cifbuild parameter {name}=yes ({feature}) is not supported")
    if not values["calindexset"].strip():
        raise UsageError("cifbuild parameter calindexset must name a file")
    category = values["category"].strip()
    if not category and not flags["ignorecategory"]:
        raise UsageError("cifbuild parameter category must not be empty")
    obs_date = (
        _date("observationdate", values["observationdate"], now)
        if flags["withobservationdate"]
        else None
    )
    warnings = []
    if not flags["withobservationdate"] and values["observationdate"].strip().lower() != "now":
        warnings.append(
            f"observationdate={values['observationdate']} is ignored without "
            "withobservationdate=yes (as in cifbuild)"
        )
    return CifbuildParams(
        out=Path(values["calindexset"]),
        obs_date=obs_date,
        analysis_date=_date("analysisdate", values["analysisdate"], now),
        category=category,
        ignore_category=flags["ignorecategory"],
        fullpath=flags["fullpath"],
        ccfpath=values["ccfpath"] if flags["withccfpath"] else None,
        values=values,
        warnings=warnings,
    )
