"""What a prune removes, told by constituent name: each content's names, and the recorded CIFs
that lose files (and so need a re-fetch, which `ccfcache env --cif` and `cif` do by
themselves)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PruneReport:
    """Names per removed content, and the recorded CIFs that use some of them."""

    removed: list[dict[str, Any]] = field(default_factory=list)  # xxh3, size, reason, names
    cifs: list[dict[str, Any]] = field(default_factory=list)  # id, path, names (lost)

    def as_dict(self) -> dict[str, Any]:
        return {"removed": self.removed, "cifs_needing_refetch": self.cifs}


def describe(index: Any, plan: Any) -> PruneReport:
    """Name what `plan` removes (its blobs) and which recorded CIFs it breaks."""
    gone = {item.xxh3: item for item in plan.blobs}
    names = index.names_of_contents(list(gone)) if gone else {}
    report = PruneReport()
    for xxh3, item in gone.items():
        report.removed.append({"xxh3": xxh3, "size": item.size, "reason": item.reason,
                               "names": names.get(xxh3, [])})
    report.removed.sort(key=lambda r: (r["names"][:1] or [""], r["xxh3"]))
    if gone:
        for cif in index.recorded_cif_rows():
            try:
                rows = json.loads(cif["rows"] or "[]")
            except ValueError:
                continue
            lost = sorted(r["name"] for r in rows if r.get("xxh3") in gone)
            if lost:
                report.cifs.append({"id": cif["id"], "path": cif["path"], "names": lost})
    return report
