"""What a CIF would need, downloading nothing: the rows the cifbuild rule selects and which of
them are not stored yet (`ccfcache cif --dry-run`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .dates import resolve_date
from .errors import SelectionError
from .select import select_constituents

if TYPE_CHECKING:
    from .fetcher import Fetcher
    from .index import Index
    from .rows import Version


@dataclass
class CifPlan:
    """The selected rows of a CIF and those of them that would be downloaded."""

    obs_date: str
    analysis_date: str
    rows: list[Version]
    missing: list[Version]
    warnings: list[str] = field(default_factory=list)

    @property
    def selected_bytes(self) -> int:
        return sum(r.size for r in self.rows)

    @property
    def missing_bytes(self) -> int:
        return sum(r.size for r in self.missing)

    def as_dict(self) -> dict[str, Any]:
        return {
            "obs_date": self.obs_date, "analysis_date": self.analysis_date,
            "selected": len(self.rows), "selected_bytes": self.selected_bytes,
            "download": [{"name": r.name, "size": r.size} for r in self.missing],
            "download_bytes": self.missing_bytes, "cached": len(self.rows) - len(self.missing),
            "warnings": self.warnings,
        }  # fmt: skip


def plan_cif(index: Index, fetcher: Fetcher, obs_date: str | None,
             analysis_date: str | None = None, *, category: str = "XMMCCF",
             ignore_category: bool = False, historical: bool = False) -> CifPlan:
    """Select as `build_cif` would and say which selected contents are not stored; fetches
    nothing and writes no CIF (`Cache.plan_cif` syncs a never-synced cache first)."""
    obs = resolve_date(obs_date)
    anal = resolve_date(analysis_date)
    rows = index.candidates_for(obs, anal, category=category, ignore_category=ignore_category,
                                historical=historical)
    selection = select_constituents(rows, obs, anal, category=category,
                                    ignore_category=ignore_category)
    if not selection.rows:
        raise SelectionError(
            f"no constituent is valid for observation date {obs} and analysis date {anal}")
    missing = [r for r in selection.rows if fetcher.local_path(r) is None]
    return CifPlan(obs, anal, list(selection.rows), missing, list(selection.warnings))
