"""Find an observation's date in its ODF: the scheduled start in the summary file (`*SUM.ASC`).

The summary `RRRR_OOOOOOOOOO_SCX00000SUM.ASC` holds an OBSERVATION block with the scheduled
start and end; cifbuild's OBSVDATE is that start. The `*SUM.SAS` written by odfingest has other
times: only its `PATH` line is used, to find the ODF folder and its SUM.ASC. The layout of the
block is parsed tolerantly, and the result says which line was read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .dates import normalise_date
from .errors import InvalidDate, OdfError


@dataclass
class OdfDate:
    """The observation date read from an ODF, the file it came from, and what was read."""

    date: str
    source: Path
    detail: str


_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?")
_BLOCK_START = re.compile(r"^[\W_]*observation\b", re.IGNORECASE)
_BLOCK_END = re.compile(r"^[\W_]*(?:exposures?|instruments?)\b", re.IGNORECASE)
_START = re.compile(r"start", re.IGNORECASE)
_PATH_LINE = re.compile(r"^\s*PATH\b\s*[=:]?\s*(?P<path>\S.*?)\s*$", re.IGNORECASE)
_MAX_SUMMARY_BYTES = 16 * 1024 * 1024


def _summaries(folder: Path, suffix: str) -> list[Path]:
    """Files in `folder` whose name ends with `suffix`, case-insensitive, sorted."""
    try:
        entries = sorted(folder.iterdir())
    except OSError as error:
        raise OdfError(f"cannot list the ODF folder {folder}: {error.strerror or error}") from None
    return [entry for entry in entries if entry.name.upper().endswith(suffix) and entry.is_file()]


def _read_text(path: Path) -> str:
    try:
        with path.open("rb") as stream:
            content = stream.read(_MAX_SUMMARY_BYTES)
    except OSError as error:
        raise OdfError(f"cannot read the ODF summary {path}: {error.strerror or error}") from None
    return content.decode("latin-1")


def parse_summary(text: str, name: str) -> tuple[str, str]:
    """The scheduled start (normalised) of the OBSERVATION block in a summary, and a detail line.

    The block begins at the first line that starts (after comment marks) with `observation`
    and ends before a line starting with `exposure`/`instrument`. In it, the first date-time on
    a line mentioning `start` wins; otherwise the first date-time of the block.
    """
    lines = text.splitlines()
    begin = next((i for i, line in enumerate(lines) if _BLOCK_START.search(line)), None)
    if begin is None:
        raise OdfError(f"no OBSERVATION block in the ODF summary {name}")
    end = next((i for i in range(begin + 1, len(lines)) if _BLOCK_END.search(lines[i])), len(lines))
    block = list(enumerate(lines[begin:end], start=begin + 1))
    dated = [(number, line, match) for number, line in block if (match := _DATE_TIME.search(line))]
    if not dated:
        raise OdfError(
            f"no scheduled start date in the OBSERVATION block of the ODF summary {name}"
        )
    starts = [entry for entry in dated if _START.search(entry[1])]
    number, line, match = (starts or dated)[0]
    try:
        date = normalise_date(match.group(0))
    except InvalidDate as error:
        raise OdfError(f"bad date on line {number} of the ODF summary {name}: {error}") from None
    how = "scheduled start" if starts else "first date"
    return date, f"{how} of OBSERVATION block in {name} (line {number})"


def _path_from_sas(sas: Path) -> Path:
    """The ODF folder named by the PATH line of an odfingest `*SUM.SAS` file."""
    for line in _read_text(sas).splitlines():
        match = _PATH_LINE.match(line)
        if match:
            target = Path(match["path"].strip("'\""))
            return target if target.is_absolute() else sas.parent / target
    raise OdfError(f"no PATH line in {sas}: cannot find the ODF it describes")


def _summary_in(folder: Path, origin: str) -> Path:
    if not folder.is_dir():
        raise OdfError(f"the ODF folder {folder} ({origin}) does not exist")
    found = _summaries(folder, "SUM.ASC")
    if not found:
        raise OdfError(f"no ODF summary (*SUM.ASC) in {folder} ({origin})")
    return found[0]


def _locate_summary(odf: Path) -> Path:
    """The SUM.ASC for an ODF folder, a SUM.ASC file, or an odfingest SUM.SAS file."""
    if odf.is_file():
        upper = odf.name.upper()
        if upper.endswith("SUM.ASC"):
            return odf
        if upper.endswith("SUM.SAS"):
            return _summary_in(_path_from_sas(odf), f"PATH of {odf.name}")
        raise OdfError(f"{odf} is neither an ODF folder nor an ODF summary file")
    if not odf.is_dir():
        raise OdfError(f"the ODF folder {odf} does not exist")
    found = _summaries(odf, "SUM.ASC")
    if found:
        return found[0]
    sas_files = _summaries(odf, "SUM.SAS")
    if not sas_files:
        raise OdfError(f"no ODF summary (*SUM.ASC or *SUM.SAS) in {odf}")
    return _summary_in(_path_from_sas(sas_files[0]), f"PATH of {sas_files[0].name}")


def observation_date_from_odf(odf_dir: Path | str) -> OdfDate:
    """The scheduled start of the observation in an ODF; raise OdfError when there is none.

    `odf_dir` is the ODF folder, or its SUM.ASC, or an odfingest SUM.SAS (followed by PATH).
    """
    summary = _locate_summary(Path(odf_dir))
    date, detail = parse_summary(_read_text(summary), summary.name)
    return OdfDate(date=date, source=summary, detail=detail)
