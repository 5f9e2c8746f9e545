"""1. Cold start to a usable CIF: `ccfcache cif` on an empty cache (listing, header reads, the
selected files) vs rsync of the full archive / the valid set from a local rsync daemon followed
by a cifbuild-like astropy header scan. Targets: <= 1/2 the bytes of the valid set, <= 1/3 of
the full archive."""

from __future__ import annotations

import bench_common as bc

TITLE = "cold start to a usable CIF vs rsync + header scan"


def bench(ctx) -> None:
    opts, server, archive = ctx.opts, ctx.server, ctx.archive
    cache_dir = bc.new_cache_dir(opts, "cold", ctx.sources)
    server.reset_counts()
    out = opts.workdir / "cold.cif"
    seconds, _ = bc.run([bc.CCFCACHE, "cif", "--obs-date", bc.OBS_DATE, "-o", str(out),
                         "--cache-dir", str(cache_dir)], env=bc.bench_env())
    ours = server.total_bytes()
    kinds = bc.traffic(server)
    ours_names = sorted(r["name"] for r in bc.cif_names(cache_dir))
    anal = bc.now_iso()
    print(f"   ccfcache: {bc.human_bytes(ours)} in {seconds:.2f} s (listings "
          f"{bc.human_bytes(kinds['listing'])}, headers {bc.human_bytes(kinds['headers'])}, "
          f"files {bc.human_bytes(kinds['files'])}); CIF of {len(ours_names)} rows")
    mirrors = opts.workdir / "mirrors"
    with bc.rsync_daemon(archive, opts.workdir) as url:
        for module, label, target in (("XMM_VALID_CCF", "valid set", 2.0),
                                      ("XMM_CCF", "full archive", 3.0)):
            dest = mirrors / module
            bc.drop_dir(dest)
            t_sync, received = bc.rsync_pull(f"{url}/{module}", dest)
            t_scan, rows = bc.timed(lambda d=dest: bc.scan_cif(d, bc.OBS_DATE, anal))
            same = sorted(r["name"] for r in rows) == ours_names
            note = "same CIF rows" if same else "CIF rows differ"
            if label == "valid set" and not same:
                note = "CIF rows differ (the valid set lacks superseded issues)"
            ctx.results.add(bc.Row("1", f"cold CIF bytes vs rsync {label}", ours,
                                   f"rsync {module}", received, "B", received / ours,
                                   f">= {target:g}x fewer", received / ours >= target, note))
            total = t_sync + t_scan
            ctx.results.add(bc.Row("1", f"cold CIF time vs rsync {label} + scan", seconds,
                                   f"rsync {module} + astropy scan", total, "s", total / seconds,
                                   "", None, f"rsync {t_sync:.2f} s + scan {t_scan:.2f} s"))
            bc.drop_dir(dest)
    bc.drop_dir(cache_dir)


if __name__ == "__main__":
    from bench_all import main_single

    main_single(1)
