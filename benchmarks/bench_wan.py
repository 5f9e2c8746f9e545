"""8. Cold start to a CIF over a wide-area network: `ccfcache cif` on an empty cache vs `rsync`
of the valid set and of the full archive (each followed by a cifbuild-like astropy header scan),
both through the same shaping relay (`wan_proxy.py`: latency per direction, a bottleneck link
per direction) in front of the test server and the rsync daemon. Profiles: laptop to ESA
(RTT 30 ms, 100 Mbit/s), across the Atlantic (RTT 120 ms, 50 Mbit/s), in-region cloud to S3
(RTT 2 ms, 1 Gbit/s). Client CPU seconds (user + system of the `ccfcache` or `rsync`
process; servers not counted) are shown too: on a loaded machine they explain the wall times.
Bytes are counted by the relay (both directions, HTTP and rsync protocol
overhead included). Target: at most half the time of the valid-set rsync in every profile.

`--wan-server test,nginx` also measures ccfcache against Debian's nginx (autoindex, Range,
ETag; plain HTTP, one worker) beside the project's Python test server, in the same relay
session and against the same rsync figures: the rsync side is a C daemon, and ESA's and
HEASARC's servers are C servers too, while the test server's own CPU shares the machine's two
cores with the client (its keys and rows carry the server's name).

The archive is generated at --wan-scale (default 10: file sizes / 10, 470 MB in all, so that a
profile takes 1-2 minutes at 50 Mbit/s); the headers a sync reads are not scaled, which weighs
against ccfcache (its bytes are 1.4 GB / scale + ~10 MB of headers)."""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace

import bench_common as bc

TITLE = "cold CIF over a wide-area network (shaping relay) vs rsync + header scan"


@dataclass(frozen=True)
class Profile:
    name: str
    rtt_ms: float
    mbit: float


PROFILES = {
    "laptop-ESA": Profile("laptop-ESA", 30, 100),
    "transatlantic": Profile("transatlantic", 120, 50),
    "cloud-S3": Profile("cloud-S3", 2, 1000),
}


@contextlib.contextmanager
def relay(profile: Profile, ports: list[int]) -> Iterator[tuple[dict[int, int], int]]:
    """The shaping relay in its own process; yields ({target port: relay port}, control)."""
    args = [bc.PYTHON, str(bc.BENCH_DIR / "wan_proxy.py"), "--rtt-ms", str(profile.rtt_ms),
            "--mbit", str(profile.mbit)]
    for port in ports:
        args += ["--forward", str(port)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        mapping, control = {}, 0
        for _ in range(len(ports) + 1):
            words = proc.stdout.readline().split()
            if words and words[0] == "listen":
                mapping[int(words[3])] = int(words[1])
            elif words and words[0] == "control":
                control = int(words[1])
        if len(mapping) != len(ports) or not control:
            raise RuntimeError("the shaping relay did not start")
        yield mapping, control
    finally:
        proc.terminate()
        proc.wait(10)


def wire_bytes(control: int) -> int:
    """Bytes the relay has carried so far, both directions."""
    with socket.create_connection(("127.0.0.1", control)) as sock:
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    counts = json.loads(data)
    return counts["up"] + counts["down"]


def children_cpu() -> float:
    """CPU seconds (user + system) of every waited-for child so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def port_of(url: str) -> int:
    return int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


def with_port(url: str, port: int) -> str:
    scheme, rest = url.split("://", 1)
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host.rsplit(':', 1)[0]}:{port}{slash}{path}"


def measure_profile(ctx, archive: bc.Archive, profile: Profile,
                    servers: list[tuple[str, list[str]]], rsync_url: str) -> dict:
    """One profile: ccfcache (and --wan-baseline) against each HTTP server, then rsync; the
    keys of a server other than the first are prefixed with its name (`nginx_ccfcache_s`)."""
    opts = ctx.opts
    env = bc.bench_env()
    ports = [port_of(http[0]) for _, http in servers] + [port_of(rsync_url)]
    with relay(profile, ports) as (mapping, control):
        rsync_via = with_port(rsync_url, mapping[port_of(rsync_url)])
        out = {"profile": profile.name, "rtt_ms": profile.rtt_ms, "mbit": profile.mbit,
               "servers": [name for name, _ in servers]}
        names: list[str] = []
        for number, (server, http) in enumerate(servers):
            sources = [with_port(u, mapping[port_of(u)]) for u in http]
            prefix = "" if number == 0 else f"{server}_"
            runs = [("ccfcache", bc.CCFCACHE)]
            if opts.wan_baseline:
                runs.append(("baseline", opts.wan_baseline))
            for key, executable in runs:
                cache_dir = bc.new_cache_dir(opts, f"wan-{profile.name}", sources)
                before = wire_bytes(control)
                cpu = children_cpu()
                seconds, _ = bc.run([executable, "cif", "--obs-date", bc.OBS_DATE, "-o",
                                     str(cache_dir / "cold.cif"), "--cache-dir",
                                     str(cache_dir)], env=env)
                out.update({f"{prefix}{key}_s": round(seconds, 2),
                            f"{prefix}{key}_bytes": wire_bytes(control) - before,
                            f"{prefix}{key}_cpu_s": round(children_cpu() - cpu, 2)})
                rows = sorted(r["name"] for r in bc.cif_names(cache_dir))
                if key == "ccfcache" and number == 0:
                    names = rows
                    out["cif_rows"] = len(names)
                else:
                    out[f"{prefix}{key}_same_rows"] = rows == names
                bc.drop_dir(cache_dir)
        anal = bc.now_iso()
        for module, key in (("XMM_VALID_CCF", "valid"), ("XMM_CCF", "full")):
            dest = opts.workdir / "wan-mirror" / module
            bc.drop_dir(dest)
            before = wire_bytes(control)
            cpu = children_cpu()
            t_sync, _ = bc.rsync_pull(f"{rsync_via}/{module}", dest)
            out[f"rsync_{key}_cpu_s"] = round(children_cpu() - cpu, 2)
            out[f"rsync_{key}_bytes"] = wire_bytes(control) - before
            t_scan, rows = bc.timed(lambda d=dest: bc.scan_cif(d, bc.OBS_DATE, anal))
            out[f"rsync_{key}_s"] = round(t_sync, 2)
            out[f"scan_{key}_s"] = round(t_scan, 2)
            out[f"{key}_same_rows"] = sorted(r["name"] for r in rows) == names
            bc.drop_dir(dest)
    return out


def http_servers(opts, archive: bc.Archive, stack: contextlib.ExitStack
                 ) -> list[tuple[str, list[str]]]:
    """The HTTP servers asked for (--wan-server), started: (name, [full URL, valid URL])."""
    started = []
    for name in opts.wan_servers:
        if name == "test":
            started.append((name, stack.enter_context(bc.serve_in_child(archive))))
        elif name == "nginx":
            started.append((name, stack.enter_context(bc.nginx_in_child(archive,
                                                                        opts.workdir))))
        else:
            raise SystemExit(f"--wan-server: unknown server {name!r} (test, nginx)")
    return started


def add_rows(ctx, row: dict, name: str, profile: Profile) -> None:
    valid = row["rsync_valid_s"] + row["scan_valid_s"]
    full = row["rsync_full_s"] + row["scan_full_s"]
    for number, server in enumerate(row["servers"]):
        prefix = "" if number == 0 else f"{server}_"
        ours = row[f"{prefix}ccfcache_s"]
        label = f"{name} (RTT {profile.rtt_ms:g} ms, {profile.mbit:g} Mbit/s)"
        if number or len(row["servers"]) > 1:
            label += f", {server} server"
        ctx.results.add(bc.Row(
            "8", f"cold CIF time, {label}", ours, "rsync valid set + scan", valid, "s",
            valid / ours, ">= 2x", valid / ours >= 2,
            f"rsync {row['rsync_valid_s']:.2f} s + scan {row['scan_valid_s']:.2f} s; "
            f"CPU {row[f'{prefix}ccfcache_cpu_s']:.2f} vs {row['rsync_valid_cpu_s']:.2f} s"))
        ctx.results.add(bc.Row(
            "8", f"cold CIF time, {label}", ours, "rsync full archive + scan", full, "s",
            full / ours, "", None,
            f"rsync {row['rsync_full_s']:.2f} s + scan {row['scan_full_s']:.2f} s"))
        if f"{prefix}baseline_s" in row:
            ctx.results.add(bc.Row(
                "8", f"cold CIF time, {label}", ours, "--wan-baseline ccfcache",
                row[f"{prefix}baseline_s"], "s", row[f"{prefix}baseline_s"] / ours, "", None,
                f"CPU {row[f'{prefix}ccfcache_cpu_s']:.2f} vs "
                f"{row[f'{prefix}baseline_cpu_s']:.2f} s; "
                f"same rows: {row[f'{prefix}baseline_same_rows']}"))
    ctx.results.add(bc.Row(
        "8", f"cold CIF bytes, {name}", row["ccfcache_bytes"], "rsync valid set",
        row["rsync_valid_bytes"], "B", row["rsync_valid_bytes"] / row["ccfcache_bytes"],
        "", None, f"full archive {bc.human_bytes(row['rsync_full_bytes'])}"))


def bench(ctx) -> None:
    opts = ctx.opts
    archive = bc.ensure_archive(replace(opts, scale=opts.wan_scale))
    print(f"   archive at scale {opts.wan_scale:g}: {bc.human_bytes(archive.bytes('full'))} full, "
          f"{bc.human_bytes(archive.bytes('valid'))} valid", flush=True)
    table = []
    with contextlib.ExitStack() as stack:
        servers = http_servers(opts, archive, stack)
        rsync_url = stack.enter_context(bc.rsync_daemon(archive, opts.workdir))
        for name in opts.wan_profiles:
            profile = PROFILES[name]
            row = measure_profile(ctx, archive, profile, servers, rsync_url)
            table.append(row)
            add_rows(ctx, row, name, profile)
    ctx.results.extra[f"8. cold CIF over a WAN, scale {opts.wan_scale:g}"] = table
    ctx.results.data["wan"] = {"scale": opts.wan_scale, "profiles": table}


if __name__ == "__main__":
    from bench_all import main_single

    main_single(8)
