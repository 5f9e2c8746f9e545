"""What a prune removes, told by constituent name: each content's names, and the recorded CIFs
that lose files (and so need a re-fetch, which `ccfcache env --cif` and `cif` do by
themselves)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .index import Index
    from .prune import PrunePlan


@dataclass(frozen=True, slots=True)
class RemovedContent:
    """A content the prune removes: its hash, size, why, and the names that had it."""

    xxh3: str
    size: int
    reason: str
    names: list[str]


@dataclass(frozen=True, slots=True)
class BrokenCif:
    """A recorded CIF that loses files (`names`) to the prune."""

    id: int
    path: str
    names: list[str]


@dataclass
class PruneReport:
    """Names per removed content, and the recorded CIFs that use some of them."""

    removed: list[RemovedContent] = field(default_factory=list)
    cifs: list[BrokenCif] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"removed": [asdict(r) for r in self.removed],
                "cifs_needing_refetch": [asdict(c) for c in self.cifs]}


def describe(index: Index, plan: PrunePlan) -> PruneReport:
    """Name what `plan` removes (its blobs) and which recorded CIFs it breaks."""
    gone = {item.xxh3: item for item in plan.blobs}
    names = index.names_of_contents(list(gone)) if gone else {}
    report = PruneReport()
    for xxh3, item in gone.items():
        report.removed.append(RemovedContent(xxh3, item.size, item.reason, names.get(xxh3, [])))
    report.removed.sort(key=lambda r: (r.names[:1] or [""], r.xxh3))
    if gone:
        for cif in index.recorded_cif_rows():
            try:
                rows = json.loads(cif.rows or "[]")
            except ValueError:
                continue
            lost = sorted(r["name"] for r in rows if r.get("xxh3") in gone)
            if lost:
                report.cifs.append(BrokenCif(cif.id, cif.path, lost))
    return report
