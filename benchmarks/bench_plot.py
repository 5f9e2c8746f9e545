"""Figures of a benchmark run (matplotlib, the `bench` extra), written as PNG into docs/:

- bench-wan.png: cold CIF time per network profile, ccfcache against rsync of the valid set and
  of the full archive (each with its header scan), from section 8;
- bench-scale.png: sync, CIF and astropy-scan times and peak memory against the number of
  listed constituents, from section 7.

    python benchmarks/bench_all.py --only 7,8 --plot        # measure, then plot
    python benchmarks/bench_plot.py results.json            # plot a saved run (--json)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_wan(wan: dict[str, Any], path: Path, stamp: str = "") -> Path:
    """Grouped bars: per profile, ccfcache's cold CIF against rsync + scan (valid, full)."""
    plt = _pyplot()
    profiles = wan["profiles"]
    labels = [f"{p['profile']}\nRTT {p['rtt_ms']:g} ms, {p['mbit']:g} Mbit/s" for p in profiles]
    series = [
        ("ccfcache cif (empty cache)", [p["ccfcache_s"] for p in profiles], "tab:blue"),
        ("rsync valid set + header scan",
         [p["rsync_valid_s"] + p["scan_valid_s"] for p in profiles], "tab:orange"),
        ("rsync full archive + header scan",
         [p["rsync_full_s"] + p["scan_full_s"] for p in profiles], "tab:gray"),
    ]
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=110)
    width = 0.26
    for i, (label, values, color) in enumerate(series):
        xs = [x + (i - 1) * width for x in range(len(profiles))]
        bars = ax.bar(xs, values, width, label=label, color=color)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    for x, p in enumerate(profiles):  # the target: half the valid-set rsync
        half = (p["rsync_valid_s"] + p["scan_valid_s"]) / 2
        ax.hlines(half, x - 1.5 * width, x + 1.5 * width, colors="black", linestyles="dashed",
                  label="target: half of rsync valid + scan" if x == 0 else None)
    ax.set_xticks(range(len(profiles)), labels, fontsize=8)
    ax.set_ylabel("seconds to a usable CIF")
    ax.set_title(f"Cold CIF over a simulated WAN (shaping relay), archive scale "
                 f"{wan['scale']:g} {stamp}".strip(), fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_scale(scale: list[dict[str, Any]], path: Path, stamp: str = "") -> Path:
    """Log-log times against listed constituents, and peak memory."""
    plt = _pyplot()
    counts = [row["count"] for row in scale]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4), dpi=110,
                                      gridspec_kw={"width_ratios": [2, 1]})
    for key, style in (("first sync", "o-"), ("sync, no change", "s-"),
                       ("sync, 1% changed", "^-"), ("cif, warm", "d-"),
                       ("astropy scan", "x--")):
        left.plot(counts, [row[key] for row in scale], style, label=key)
    left.axhline(1.0, color="black", linestyle=":", linewidth=1,
                 label="target: no-change sync < 1 s")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("listed constituents")
    left.set_ylabel("seconds")
    left.legend(fontsize=7)
    left.set_title(f"Scale {stamp}".strip(), fontsize=10)
    right.plot(counts, [row["rss_sync_mib"] for row in scale], "o-", label="sync")
    right.plot(counts, [row["rss_cif_mib"] for row in scale], "d-", label="cif")
    right.axhline(200, color="black", linestyle=":", linewidth=1, label="target 200 MiB")
    right.set_xscale("log")
    right.set_xlabel("listed constituents")
    right.set_ylabel("peak RSS (MiB)")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_all(data: dict[str, Any], meta: dict[str, Any], folder: Path = DOCS) -> list[Path]:
    """Every figure the run has data for."""
    stamp = f"({meta.get('date', '')[:10]})" if meta.get("date") else ""
    written = []
    if data.get("wan"):
        written.append(plot_wan(data["wan"], folder / "bench-wan.png", stamp))
    if data.get("scale"):
        written.append(plot_scale(data["scale"], folder / "bench-scale.png", stamp))
    for path in written:
        print(f"wrote {path}", flush=True)
    return written


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        sys.exit("usage: python benchmarks/bench_plot.py RESULTS.json (from bench_all --json)")
    saved = json.loads(Path(args[0]).read_text())
    plot_all(saved.get("data", {}), saved.get("meta", {}))


if __name__ == "__main__":
    main()
