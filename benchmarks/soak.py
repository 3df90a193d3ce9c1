"""Memory soak (SPEC 12: flat RSS over a 10-minute soak).

Runs agents against a runtime on SQLite with deferred tracing for ``--minutes``: each session resolves and
executes a few times, then ends; a sweep runs every second of wall time (forgetting expired resolutions, pruning
limiter windows). RSS is sampled every ``--every`` seconds and printed as CSV (elapsed_s, rss_mb, operations),
then a summary line with the first/last/max RSS after warm-up.

Run: ``.venv/bin/python benchmarks/soak.py --minutes 10``.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from pathlib import Path

import cra

ATLAS = json.loads(
    (Path(__file__).resolve().parent.parent / "tests/conformance/resolve.partial.json").read_text()
)["atlas"]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=30.0)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="cra-soak-")
    # A short TTL and retention so that the sweep really forgets resolutions during the soak.
    runtime = cra.Runtime(
        storage=f"sqlite:///{directory}/soak.db", resolution_ttl_seconds=5, resolution_retention_seconds=5
    )
    runtime.load_atlas(ATLAS)
    runtime.register("resource.get", lambda params: {"ok": True})
    gc.collect()
    gc.freeze()
    started = time.monotonic()
    deadline = started + args.minutes * 60
    next_sample = started
    next_sweep = started + 1
    operations = 0
    samples: list[tuple[float, float, int]] = []
    print("elapsed_s,rss_mb,operations")
    while time.monotonic() < deadline:
        session = runtime.create_session("soak-agent", "Stay flat").session_id
        for _ in range(5):
            resolution = runtime.resolve(session)
            runtime.execute(session, resolution.resolution_id, "resource.get", {"resource_id": "r-1"})
            operations += 2
        runtime.end_session(session)
        now = time.monotonic()
        if now >= next_sweep:
            runtime.sweep()
            next_sweep = now + 1
        if now >= next_sample:
            sample = (round(now - started, 1), round(rss_mb(), 1), operations)
            samples.append(sample)
            print(",".join(map(str, sample)), flush=True)
            next_sample = now + args.every
    runtime.close()
    settled = samples[2:] or samples  # after warm-up
    print(
        f"summary: operations={operations} rss_first={settled[0][1]} rss_last={settled[-1][1]} "
        f"rss_max={max(s[1] for s in settled)} MB"
    )


if __name__ == "__main__":
    main()
