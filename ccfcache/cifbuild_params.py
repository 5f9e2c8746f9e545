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
# given, these are read and checked but change nothing: ccfcache serves files from its cache
_IGNORED = {
    "withccfpath": "the files come from the cache, not from a CCF folder",
    "ccfpath": "the files come from the cache, not from a CCF folder",
    "usecanonicalname": "the cache always uses the canonical names",
    "recurse": "no CCF folder is searched",
    "fileglob": "no CCF folder is searched",
    "withmasterindexset": "no Master Index File is written",
    "masterindexset": "no Master Index File is written",
}
# SAS's options common to every task: accepted, without effect on the CIF
_TASK_OPTIONS = {"-V": "verbosity", "--verbosity": "verbosity", "-w": "warning",
                 "--warning": "warning", "-t": "trace", "--trace": "trace",
                 "-c": "noclobber", "--noclobber": "noclobber"}
_TASK_FLAGS = {"trace", "noclobber"}
_TASK_PARAMETERS = {"verbosity", "warning", "trace", "noclobber"}

#: what `ccfcache cifbuild --help` lists
PARAMETER_HELP = {
    "calindexset": "the CIF to write",
    "withobservationdate": "yes: use observationdate; no: the ODF's date ($SAS_ODF) or now",
    "observationdate": "observation date (ISO) or now",
    "analysisdate": "analysis date (ISO) or now",
    "category": "CATEGORY to select (XMMCCF; any case)",
    "ignorecategory": "yes: select constituents of any category",
    "fullpath": "yes: full paths (into the cache's view folder) in FNAME",
    **{name: f"accepted, ignored ({why})" for name, why in _IGNORED.items()},
    "masterindex, append": "only 'no' (not supported)",
    "-V n, verbosity=n, -w n, -t, -c": "SAS task options: accepted, no effect",
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


def normalise_tokens(args: list[str]) -> list[str]:
    """SAS's spellings as `name=value`: `--name=value`, `--name value`, `-V 4`, `-V4`, and the
    flag task options (`-t`, `-c`)."""
    out: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if not token.startswith("-"):
            out.append(token)
            continue
        option, equals, value = token.partition("=")
        short = option[:2] if len(option) > 2 and not option.startswith("--") else option
        if short in _TASK_OPTIONS and short != option:  # -V4
            option, value, equals = short, option[2:], "="
        name = _TASK_OPTIONS.get(option) or option.lstrip("-")
        if name not in DEFAULTS and name not in _TASK_PARAMETERS:
            raise UsageError(f"unknown cifbuild parameter {token!r} (known: "
                             f"{', '.join(DEFAULTS)}, and -V/verbosity)")
        if not equals:
            if name in _TASK_FLAGS:
                value = "yes"
            elif i < len(args) and not args[i].startswith("-") and "=" not in args[i]:
                value = args[i]
                i += 1
            else:
                raise UsageError(f"malformed cifbuild option {token!r}: it needs a value "
                                 f"({name}=VALUE)")
        out.append(f"{name}={value}")
    return out


def _split(token: str) -> tuple[str, str]:
    name, equals, value = token.partition("=")
    name = name.strip()
    if not equals or not name:
        raise UsageError(f"malformed cifbuild parameter {token!r}: expected name=value")
    if name not in DEFAULTS and name not in _TASK_PARAMETERS:
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
    given: list[str] = []
    for token in normalise_tokens(args):
        name, value = _split(token)
        if name in _TASK_PARAMETERS:
            continue  # verbosity and the like: nothing to do
        values[name] = value
        given.append(name)
    flags = {name: _boolean(name, values[name]) for name in _BOOLEANS}
    for name, feature in _UNSUPPORTED.items():
        if flags[name]:
            raise UsageError(f"cifbuild parameter {name}=yes ({feature}) is not supported")
    if not values["calindexset"].strip():
        raise UsageError("cifbuild parameter calindexset must name a file")
    category = values["category"].strip().upper()  # cifbuild matches it in any case
    if not category and not flags["ignorecategory"]:
        raise UsageError("cifbuild parameter category must not be empty")
    obs_date = (
        _date("observationdate", values["observationdate"], now)
        if flags["withobservationdate"]
        else None
    )
    warnings = [f"{name}={values[name]} is ignored: {_IGNORED[name]}"
                for name in dict.fromkeys(given) if name in _IGNORED]
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
