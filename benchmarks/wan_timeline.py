"""How busy the shaping relay's link was during one command: reads a `wan_proxy.py --trace`
file and prints, from `--start` (a `time.time()`, default: the first byte up), the time of the
first request, of the first byte of the first large response (a download), the share of the
link used in windows of `--window` seconds, and the time lost to idle or part-used windows
after the first download started.

    python benchmarks/wan_timeline.py TRACE --mbit 100 [--start T] [--window 0.25]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

LARGE = 64 * 1024  # a connection that received more than this in one response is downloading


def load(path: str) -> list[tuple[float, int, str, int]]:
    rows = []
    with open(path) as stream:
        for line in stream:
            words = line.split()
            if len(words) == 4:
                rows.append((float(words[0]), int(words[1]), words[2], int(words[3])))
    return sorted(rows)


def summarise(rows: list[tuple[float, int, str, int]], mbit: float, start: float | None,
              window: float) -> dict:
    if not rows:
        return {}
    t0 = start if start is not None else rows[0][0]
    first_up = next(t for t, _, d, _ in rows if d == "up") - t0
    seen: dict[int, int] = defaultdict(int)
    first_download = None
    for t, conn, direction, size in rows:
        if direction == "down":
            seen[conn] += size
            if first_download is None and seen[conn] > LARGE:
                first_download = t - t0
    end = rows[-1][0] - t0
    capacity = mbit * 1e6 / 8 * window
    windows = [0] * (int(end / window) + 1)
    for t, _, direction, size in rows:
        if direction == "down":
            windows[int((t - t0) / window)] += size
    down = sum(windows)
    lost = 0.0
    begin = int((first_download or 0) / window)
    for used in windows[begin:]:
        lost += window * max(0.0, 1 - used / capacity)
    return {"first_request_s": round(first_up, 3),
            "first_download_s": round(first_download, 3) if first_download else None,
            "last_byte_s": round(end, 3), "down_bytes": down,
            "link_bound_s": round(down * 8 / (mbit * 1e6), 3),
            "idle_after_first_download_s": round(lost, 3),
            "use": [round(w / capacity, 2) for w in windows]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trace")
    parser.add_argument("--mbit", type=float, required=True)
    parser.add_argument("--start", type=float, default=None)
    parser.add_argument("--window", type=float, default=0.25)
    args = parser.parse_args()
    out = summarise(load(args.trace), args.mbit, args.start, args.window)
    use = out.pop("use", [])
    for key, value in out.items():
        print(f"{key}: {value}")
    bars = " ▁▂▃▄▅▆▇█"
    print("link use per window:",
          "".join(bars[min(8, int(u * 8 + 0.5))] for u in use))


if __name__ == "__main__":
    main()
