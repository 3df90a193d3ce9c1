"""Where one resolve spends its time: cProfile over many resolves, averaged per resolve.

    .venv/bin/python benchmarks/profile_resolve.py                    # 5-action Atlas, top 10 by own time
    .venv/bin/python benchmarks/profile_resolve.py --atlas generated --count 200 --sort cumulative

cProfile adds a fixed cost to every Python call, so absolute times are inflated (small, frequently called
functions most); use the ranking to choose hot-path work and the benchmarks to measure it. Only the calling
thread is profiled: with deferred tracing the background processor's chaining and storing is not in it.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from typing import Any

from atlases import generated_atlas, make_runtime, partial_atlas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--atlas", choices=("partial", "generated"), default="partial")
    parser.add_argument("--count", type=int, default=5_000, help="resolves to profile")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--sort", choices=("tottime", "cumulative"), default="tottime")
    parser.add_argument(
        "--uncached", action="store_true", help="Runtime(resolution_cache=False): evaluate every resolve"
    )
    parser.add_argument("--tracing", choices=("immediate", "deferred"), help="pass tracing= to cra.Runtime")
    args = parser.parse_args(argv)

    options: dict[str, Any] = {"resolution_cache": False} if args.uncached else {}
    if args.tracing:
        options["tracing"] = args.tracing
    runtime = make_runtime(partial_atlas() if args.atlas == "partial" else generated_atlas(), **options)
    sid = runtime.create_session("agent-1", "Manage resources").session_id
    resolve = runtime.resolve
    for _ in range(max(1, args.count // 20)):  # warm-up
        resolve(sid)

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(args.count):
        resolve(sid)
    profiler.disable()

    stats = pstats.Stats(profiler)
    total = stats.total_tt  # type: ignore[attr-defined]
    mode = getattr(runtime, "tracing", "immediate")
    what = f"{args.atlas} Atlas, {mode} tracing{', uncached' if args.uncached else ''}"
    print(f"{args.count} resolves ({what}) under cProfile: {total / args.count * 1e6:.1f} us each")
    print(f"top {args.top} by {args.sort}; times are per resolve")
    print(f"{'calls/resolve':>13s} {'own us':>8s} {'own %':>6s} {'cum us':>8s}  function")
    rows = []
    for (filename, line, func), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = filename.split("/src/", 1)[-1] if "/src/" in filename else filename.rsplit("/", 1)[-1]
        label = f"{where}:{line}({func})" if line else func
        rows.append((ncalls / args.count, tottime / args.count, cumtime / args.count, label))
    key = 1 if args.sort == "tottime" else 2
    rows.sort(key=lambda row: row[key], reverse=True)
    for calls, own, cum, label in rows[: args.top]:
        print(
            f"{calls:13.1f} {own * 1e6:8.2f} {own * args.count / total * 100:5.1f}% {cum * 1e6:8.2f}  {label}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
