"""HTTP resolve throughput and latency of ``cra serve`` (SPEC 12: >= 8k req/s at 32 connections, p99 <= 10 ms).

    .venv/bin/python benchmarks/http_load.py                       # wrk if installed, else the Python client
    .venv/bin/python benchmarks/http_load.py --workers 2 --duration 10
    .venv/bin/python benchmarks/http_load.py --engine python       # the asyncio client, even with wrk present
    .venv/bin/python benchmarks/http_load.py --py-spy profile.txt  # also sample the server with py-spy
    .venv/bin/python benchmarks/http_load.py --url http://127.0.0.1:8420 --server-pid 1234  # your own server

Starts ``cra serve`` as a subprocess on loopback (a free port) with SQLite storage in a temporary directory and
the Atlas ``cra init`` writes, opens one session per connection, warms up, then keeps every connection busy
with ``POST /v1/resolve`` for ``--duration`` seconds (a closed loop: each connection sends its next request
when the answer to the last one arrives). Each request carries a fresh ``request_id`` (the runtime refuses a
duplicate in a session with 409) and the current time (it refuses a skew over 300 s).

Prints one JSON line: ``requests, seconds, rps, p50_ms, p99_ms, errors, connections, workers`` plus the engine
and the CPU the client, the server and everything else on the machine used during the run (in % of one core):
a client that became the bottleneck shows, and so does other load that makes the figures low.
``requests`` counts every answer, ``errors`` the answers that were not 2xx plus socket errors and timeouts, and
``rps`` only the 2xx answers per second (a 429 is cheap: it must not pass for throughput). Latencies are of
every answer, as the client saw them (closed loop: a stalled server delays the next request rather than piling
requests up, so this understates the tail an open-loop load would see).

cra serve limits each credential to 1000 requests/s by default, and the load comes from one (no auth on
loopback), so the benchmark turns that limit off (``CRA_RATE_LIMIT_PER_SECOND=0``) unless
``--keep-rate-limit``.

Engines: ``wrk`` (C, LuaJIT: the cheapest client; a generated Lua script builds the bodies) and ``python``
(raw asyncio streams on uvloop, one coroutine per connection, no HTTP library). With ``wrk`` each thread
gets a slice of the sessions; with ``--workers`` > 1 the default is one wrk thread per connection, so each
session stays on one connection and so in one server process (docs/server.md, *Workers*).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from cra.clock import format_timestamp

AGENT = "bench-agent"
GOAL = "Answer ticket T-1001"
START_DEADLINE = 30.0
"""Seconds the server may take to answer /v1/health."""
CLI = [sys.executable, "-c", "from cra.cli import main; main()"]
"""``cra`` without relying on the console script being on PATH (``cra.cli`` has no ``__main__``)."""
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    """One measured run (latencies in milliseconds)."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    """Answers that were not 2xx plus socket errors and timeouts."""
    refused: int
    """Answers that were not 2xx (counted in ``requests`` and ``errors``, not in the throughput)."""
    client_cpu_seconds: float


# --- the server ---------------------------------------------------------------------------------------------


def free_port() -> int:
    """A port nobody listens on now (bound and released; the server binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _server_env(rate_limit: bool = True) -> dict[str, str]:
    """The server's environment: the caller's own CRA_* settings (auth, a config file, another storage) must
    not change what is measured. Without ``rate_limit`` the per-credential request limit is off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRA_")}
    env["CRA_LOG_LEVEL"] = "warning"
    if not rate_limit:
        # Every connection uses the one (absent) credential: its default limit, 1000 req/s, would be measured.
        env["CRA_RATE_LIMIT_PER_SECOND"] = "0"
    return env


@contextmanager
def cra_serve(
    workdir: Path, workers: int, rate_limit: bool = True
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``cra serve`` on a free loopback port with SQLite in ``workdir``; yields (process, base URL)."""
    atlas = workdir / "atlas"
    subprocess.run([*CLI, "init", str(atlas)], check=True, stdout=subprocess.DEVNULL, env=_server_env())
    port = free_port()
    command = [
        *CLI,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage",
        f"sqlite:///{workdir / 'cra.db'}",
        "--atlas",
        str(atlas),
        "--workers",
        str(workers),
    ]
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        # A session of its own, so the SIGTERM below reaches every worker of a multi-process server.
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=_server_env(rate_limit), start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(process, url, log_path)
        yield process, url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def _wait_ready(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE
    with httpx.Client(base_url=url, timeout=1.0) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            try:
                if http.get("/v1/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    log = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
    raise RuntimeError(f"cra serve did not become ready:\n{log}")


def open_sessions(url: str, count: int) -> list[str]:
    """One session per connection (``session.started`` is durable on return, so every worker finds it)."""
    with httpx.Client(base_url=url, timeout=10.0) as http:
        ids = []
        for i in range(count):
            response = http.post("/v1/sessions", json={"agent_id": AGENT, "goal": f"{GOAL} (connection {i})"})
            response.raise_for_status()
            ids.append(str(response.json()["session_id"]))
        return ids


def _process_tree(root: int) -> list[int]:
    """``root`` and its descendants (uvicorn's worker processes), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    tree, stack = [], [root]
    while stack:
        pid = stack.pop()
        tree.append(pid)
        stack.extend(children.get(pid, []))
    return tree


def server_cpu_seconds(root: int) -> float:
    """User + system CPU of the server and its workers so far."""
    total = 0
    for pid in _process_tree(root):
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        except (OSError, ValueError, IndexError):
            continue
    return total / _TICKS


def machine_busy_seconds() -> float:
    """CPU seconds all processes have used so far, from /proc/stat (to see other load on the machine)."""
    with open("/proc/stat", encoding="ascii") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / _TICKS


# --- the wrk engine -----------------------------------------------------------------------------------------

_LUA = r"""
-- Generated by benchmarks/http_load.py: resolve requests with unique request ids, one session slice a thread.
local sessions = {%(sessions)s}
local threads, run, agent, goal = %(threads)d, %(run)d, "%(agent)s", "%(goal)s"
local index = 0

function setup(thread)
  thread:set("tindex", index)
  index = index + 1
end

local mine, counter, second, stamp = {}, 0, -1, ""
local headers = {["Content-Type"] = "application/json"}

function init(args)
  for i = tindex + 1, #sessions, threads do mine[#mine + 1] = sessions[i] end
end

function request()
  counter = counter + 1
  local now = os.time()
  if now ~= second then  -- the timestamp only has to be within 300 s: format it once a second
    second = now
    stamp = os.date("!%%Y-%%m-%%dT%%H:%%M:%%SZ", now)
  end
  local body = '{"carp_version":"1.0","request_id":"'
    .. string.format("%%08x-%%04x-7000-8000-%%012x", run, tindex, counter)
    .. '","timestamp":"' .. stamp .. '","operation":"resolve","requester":{"agent_id":"' .. agent
    .. '","session_id":"' .. mine[counter %% #mine + 1] .. '"},"task":{"goal":"' .. goal .. '"}}'
  return wrk.format("POST", "/v1/resolve", headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p99_us":%%d,"connect":%%d,"read":%%d,'
      .. '"write":%%d,"status":%%d,"timeout":%%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def run_wrk(url: str, sessions: list[str], threads: int, seconds: float, run: int, workdir: Path) -> Result:
    """One wrk run; ``run`` keeps request ids unique across runs (warm-up, measurement)."""
    script = workdir / f"resolve-{run}.lua"
    script.write_text(
        _LUA
        % {
            "sessions": ", ".join(f'"{s}"' for s in sessions),
            "threads": threads,
            "run": run,
            "agent": AGENT,
            "goal": GOAL,
        },
        encoding="utf-8",
    )
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{len(sessions)}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        url,
    ]
    # wrk is reaped by subprocess.run, so the children's rusage delta is its CPU (the server is not reaped).
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{done.stdout}\n{done.stderr}")
    data: dict[str, int] = json.loads(line.removeprefix("WRK_JSON "))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    errors = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
    return Result(
        data["requests"],
        data["duration_us"] / 1e6,
        data["p50_us"] / 1e3,
        data["p99_us"] / 1e3,
        errors,
        data["status"],
        cpu,
    )


# --- the Python engine --------------------------------------------------------------------------------------


def _percentile(ordered: list[int], pct: float) -> int:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return 0
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


async def _connection(
    host: str, port: int, session_id: str, tag: int, until: float, latencies: list[int], errors: list[int]
) -> None:
    """One keep-alive connection sending resolves back to back until ``until`` (monotonic seconds)."""
    reader, writer = await asyncio.open_connection(host, port)
    # Everything but the request id and timestamp is fixed: build it once, as bytes.
    prefix = b'{"carp_version":"1.0","request_id":"'
    middle = b'","timestamp":"'
    suffix = (
        f'","operation":"resolve","requester":{{"agent_id":"{AGENT}","session_id":"{session_id}"}},'
        f'"task":{{"goal":"{GOAL}"}}}}'
    ).encode()
    head = f"POST /v1/resolve HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n".encode()
    counter = 0
    clock = time.perf_counter_ns
    try:
        while time.monotonic() < until:
            counter += 1
            request_id = f"{tag:08x}-0000-7000-8000-{counter:012x}".encode()
            stamp = format_timestamp(time.time_ns() // 1000).encode()
            body = b"".join((prefix, request_id, middle, stamp, suffix))
            started = clock()
            writer.write(b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body))
            header = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in header.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(clock() - started)
            if header[9:12] != b"200":
                errors.append(1)
    finally:
        writer.close()
        await writer.wait_closed()


async def _run_python(url: str, sessions: list[str], seconds: float, run: int) -> Result:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    latencies: list[int] = []
    errors: list[int] = []
    cpu_before = time.process_time()
    started = time.monotonic()
    until = started + seconds
    await asyncio.gather(
        *(
            _connection(host, int(port), sid, (run << 16) | i, until, latencies, errors)
            for i, sid in enumerate(sessions)
        )
    )
    elapsed = time.monotonic() - started
    cpu = time.process_time() - cpu_before
    latencies.sort()
    return Result(
        len(latencies),
        elapsed,
        _percentile(latencies, 50) / 1e6,
        _percentile(latencies, 99) / 1e6,
        len(errors),
        len(errors),
        cpu,
    )


def run_python(url: str, sessions: list[str], seconds: float, run: int) -> Result:
    """One run of the asyncio client in this process (uvloop when installed: less client overhead)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_run_python(url, sessions, seconds, run))
    return uvloop.run(_run_python(url, sessions, seconds, run))


# --- main ---------------------------------------------------------------------------------------------------


@contextmanager
def _target(args: argparse.Namespace, workdir: Path) -> Iterator[tuple[int | None, str]]:
    """The server to load: ``--url`` (started by you; its pid from ``--server-pid``, for CPU and py-spy) or
    a ``cra serve`` of our own. Yields (pid or None, base URL)."""
    if args.url:
        yield args.server_pid, args.url.rstrip("/")
        return
    with cra_serve(workdir, args.workers, rate_limit=args.keep_rate_limit) as (process, url):
        yield process.pid, url


def _py_spy(pid: int, seconds: float, output: str) -> subprocess.Popen[bytes]:
    """py-spy sampling every process of the server (--subprocesses) for ``seconds``: only the thread holding
    the GIL (--gil: Python work is serialised on it, so that is where the time goes), without pausing the
    server to read its stacks (--nonblocking). Collapsed stacks, one per line (--format raw)."""
    command = [
        str(Path(sys.executable).parent / "py-spy"),
        "record",
        "--pid",
        str(pid),
        "--subprocesses",
        "--gil",
        "--nonblocking",
        "--rate",
        "250",
        "--duration",
        str(max(1, round(seconds))),
        "--format",
        "raw",
        "--output",
        str(Path(output).resolve()),
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Start the server (unless ``--url``), warm up, measure once; the JSON summary."""
    engine = args.engine
    if engine == "auto":
        engine = "wrk" if shutil.which("wrk") else "python"
    threads = min(args.wrk_threads or (args.connections if args.workers > 1 else 2), args.connections)
    server_cpu: float | None = None
    busy = 0.0
    with tempfile.TemporaryDirectory(prefix="cra-http-load-") as tmp:
        workdir = Path(tmp)
        with _target(args, workdir) as (pid, url):
            sessions = open_sessions(url, args.connections)

            def once(seconds: float, run: int) -> Result:
                if engine == "wrk":
                    return run_wrk(url, sessions, threads, seconds, run, workdir)
                return run_python(url, sessions, seconds, run)

            if args.warmup > 0:
                once(args.warmup, 1)
            spy = _py_spy(pid, args.duration, args.py_spy) if args.py_spy and pid is not None else None
            server_before = server_cpu_seconds(pid) if pid is not None else 0.0
            busy_before = machine_busy_seconds()
            try:
                result = once(args.duration, 2)
                busy = machine_busy_seconds() - busy_before
                if pid is not None:
                    server_cpu = server_cpu_seconds(pid) - server_before
            finally:
                if spy is not None:
                    try:
                        spy.wait(args.duration + 30)
                    except subprocess.TimeoutExpired:
                        spy.kill()
                        spy.wait()
    return {
        "requests": result.requests,
        "seconds": round(result.seconds, 3),
        # Answers per second that were 200s: a refusal (429, 5xx) is cheap and must not count as throughput.
        "rps": round((result.requests - result.refused) / result.seconds, 1) if result.seconds else 0.0,
        "p50_ms": round(result.p50_ms, 3),
        "p99_ms": round(result.p99_ms, 3),
        "errors": result.errors,
        "connections": args.connections,
        "workers": args.workers,
        "engine": engine if engine == "python" else f"wrk -t{threads}",
        "client_cpu_percent": round(100 * result.client_cpu_seconds / result.seconds, 1),
        "server_cpu_percent": None if server_cpu is None else round(100 * server_cpu / result.seconds, 1),
        # CPU that neither the server nor the client used during the run: other load on the machine, which
        # makes the figures lower than on a quiet one.
        "other_cpu_percent": None
        if server_cpu is None
        else round(100 * (busy - server_cpu - result.client_cpu_seconds) / result.seconds, 1),
        "cpus": os.cpu_count(),
        "request_rate_limit": "as configured" if args.url else ("default" if args.keep_rate_limit else "off"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds (default 10)")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of load before measuring (default 2)"
    )
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections (default 32)")
    parser.add_argument("--workers", type=int, choices=(1, 2), default=1, help="cra serve --workers (1 or 2)")
    parser.add_argument("--engine", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument(
        "--wrk-threads",
        type=int,
        default=0,
        help="wrk threads (default 2; one per connection with --workers 2, so sessions stay on a worker)",
    )
    parser.add_argument("--py-spy", metavar="FILE", help="also record the server with py-spy (raw format)")
    parser.add_argument(
        "--keep-rate-limit",
        action="store_true",
        help="keep cra serve's per-credential request limit (default: off, since it caps one credential at "
        "1000 req/s by default and the load uses one)",
    )
    parser.add_argument("--url", help="load this running server instead of starting cra serve (no auth)")
    parser.add_argument("--server-pid", type=int, help="with --url: the server's pid (CPU use, --py-spy)")
    args = parser.parse_args(argv)
    if args.connections < 1 or args.duration <= 0:
        parser.error("--connections must be >= 1 and --duration > 0")
    print(json.dumps(measure(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
