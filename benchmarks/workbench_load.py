"""Load on the annotation workbench: simulated annotators against a real server on SQLite and on PostgreSQL.

    .venv/bin/python benchmarks/workbench_load.py [--users 50] [--seconds 60] [--backends sqlite,postgresql]
        [--records 20000] [--overlap 2] [--think-ms 0] [--postgres-url postgresql://USER@HOST:PORT/DB]
        [--workdir DIR] [--json-out OUT.json]

For each backend: a fresh database gets ``--users`` annotators (each with an API token), one ``write``
project with ``--overlap`` and ``--records`` imported chunks (enough that the queue never runs dry). Then
``annotune workbench serve`` starts in a child process and this process runs the annotators with asyncio,
one ``httpx.AsyncClient`` (one connection) each: ``GET /api/projects/P/next``, wait ``--think-ms`` (0 by
default: no human pause at all, every annotator asks again the moment an answer comes back, which is the
worst case for the server; a real annotator spends tens of seconds per chunk), ``POST .../tasks/ID/submit``,
and again, until ``--seconds`` have passed. Every request's latency is measured from sending to the full
response; errors are counted by status (or exception type); every acknowledged submit's ``annotation_id``
is kept.

After the run the server is stopped (SIGTERM) and the database is read back: acknowledged ids that are not
in the ``annotations`` table are *lost*; rows that no annotator saw acknowledged (a request that timed out)
are counted too, and so are records with more annotations than the overlap or whose ``submitted`` count
differs from their rows. CPU time of this process (the load generator), of the server and of the whole
machine is reported, since all share the same cores; so is what the machine was busy with in the 3 s
before the load (other people's work on a shared machine).

Without ``--postgres-url`` a PostgreSQL server is started for the run (initdb into a temporary folder, as
the ``postgres`` user when run as root; default settings apart from the port, the socket folder,
``listen_addresses`` and ``max_connections``) and stopped at the end. With it, a new database is created on
that server for the run and dropped afterwards.

Targets: p95 latency under 100 ms, nothing lost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

# The test suite's helpers: the workbench server in a child process, PostgreSQL's binaries, a free port.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fixtures"))
from workbench_fixtures import Server, _admin_sql, _as_postgres, _pg_bin, free_port

PROJECT = "bench"
PASSWORD = "bench-password"
P95_TARGET_MS = 100.0
ENDPOINTS = ("next", "submit")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=50, help="concurrent simulated annotators (default 50)")
    p.add_argument("--seconds", type=float, default=60.0, help="how long the load runs per backend (default 60)")
    p.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    p.add_argument("--records", type=int, default=20000, help="chunks imported into the project (default 20000)")
    p.add_argument("--workers", type=int, default=1, help="server worker processes (serve --workers; default 1)")
    p.add_argument("--overlap", type=int, default=2, help="annotations each record needs (default 2)")
    p.add_argument("--think-ms", type=float, default=0.0,
                   help="mean pause between receiving a task and submitting it, drawn uniformly from 0.5x to "
                        "1.5x; each annotator also starts after a random 0 to 1x of it (default 0: no pause, "
                        "all start at once, the worst case)")
    p.add_argument("--postgres-url", help="use this PostgreSQL server (a database is created on it for the run) "
                                          "instead of starting one")
    p.add_argument("--workdir", help="keep the databases, data and server logs here (default: a temporary "
                                     "folder, removed at the end)")
    p.add_argument("--timeout", type=float, default=60.0, help="per-request timeout in seconds (default 60)")
    p.add_argument("--json-out", help="also write the results to this file")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(args.backends) - {"sqlite", "postgresql"}
    if unknown:
        p.error(f"unknown backend(s): {', '.join(sorted(unknown))}")
    return args


# ------------------------------------------------------------------------------------------ PostgreSQL


class LocalPostgres:
    """A throw-away PostgreSQL server on loopback (trust authentication, user ``annotune``)."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.root = Path(tempfile.mkdtemp(prefix="annotune-bench-pg-"))
        self.data, self.sockets = self.root / "data", self.root / "sock"
        self.port = free_port()

    def _run(self, *command: str) -> None:
        done = subprocess.run(_as_postgres(list(command)), capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{Path(command[0]).name} failed:\n{done.stdout}{done.stderr}")

    def start(self) -> str:
        for folder in (self.data, self.sockets):
            folder.mkdir()
        if os.geteuid() == 0:
            for folder in (self.root, self.data, self.sockets):
                shutil.chown(folder, "postgres")
            self.root.chmod(0o755)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "annotune", "--auth=trust",
                  "--encoding=UTF8")
        options = (f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 "
                   "-c max_connections=300")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.root / "log"),
                  "-w", "start")
        return f"postgresql://annotune@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def _with_database(server_url: str, name: str) -> str:
    import sqlalchemy as sa

    return sa.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False)


# ----------------------------------------------------------------------------------------------- set-up


def write_chunks(path: Path, count: int) -> None:
    rng = random.Random(1)
    words = ["annotune", "workbench", "lease", "record", "answer", "question", "chunk", "export", "review",
             "token", "project", "overlap", "queue", "submit", "server", "database"]
    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            text = " ".join(rng.choice(words) for _ in range(rng.randint(60, 140))) + "."
            out.write(json.dumps({"id": f"c{i}", "text": text, "source": {"path": f"doc{i // 20}.md"}}) + "\n")


def populate(url: str, users: int, overlap: int, chunks: Path) -> list[str]:
    """Annotators, their tokens, the project and its records; returns one API token per annotator."""
    from annotune.annotate import importing, store
    from annotune.annotate.db import open_database

    db = open_database(url)
    tokens = []
    try:
        with db.transaction() as conn:
            project = store.create_project(conn, PROJECT, "write", overlap=overlap)
            for i in range(users):
                user = store.add_user(conn, f"annotator{i:03d}", "annotator", PASSWORD)
                store.add_member(conn, project, user)
                tokens.append(store.create_token(conn, user, "load benchmark"))
            importing.import_file(conn, project, chunks, "chunks")
    finally:
        db.dispose()
    return tokens


# -------------------------------------------------------------------------------------------------- load


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {e: [] for e in ENDPOINTS})
    errors: Counter = field(default_factory=Counter)  # "endpoint status" -> count
    acknowledged: list[int] = field(default_factory=list)  # annotation ids
    queue_empty: int = 0  # annotators that got no task


ANSWER = {"pairs": [{"question": "What does the workbench lease?", "answer": "One record per annotator."}]}


async def annotator(client: httpx.AsyncClient, deadline: float, think_s: float, tally: Tally,
                    rng: random.Random) -> None:
    next_path, submit_path = f"/api/projects/{PROJECT}/next", f"/api/projects/{PROJECT}/tasks/{{}}/submit"

    async def call(endpoint: str, method: str, path: str, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            response = await client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            tally.latencies[endpoint].append(time.perf_counter() - started)
            tally.errors[f"{endpoint} {type(exc).__name__}"] += 1
            return None
        tally.latencies[endpoint].append(time.perf_counter() - started)
        if response.status_code != 200:
            tally.errors[f"{endpoint} {response.status_code}"] += 1
            return None
        return response.json()

    if think_s:  # people do not all start at the same instant; without think time they do (the worst case)
        await asyncio.sleep(rng.uniform(0, think_s))
    while time.perf_counter() < deadline:
        body = await call("next", "POST", next_path)
        if body is None:
            await asyncio.sleep(0.05)  # do not spin on a failing server
            continue
        task = body["task"]
        if task is None:
            tally.queue_empty += 1
            return
        if think_s:
            await asyncio.sleep(think_s * rng.uniform(0.5, 1.5))
        done = await call("submit", "POST", submit_path.format(task["assignment_id"]), json={"value": ANSWER})
        if done is not None:
            tally.acknowledged.append(done["annotation_id"])


async def run_load(tokens: list[str], base: str, seconds: float, think_ms: float, timeout: float,
                   seed: int) -> tuple[Tally, float]:
    """All annotators at once, each with its own client and connection, made before the clock starts.

    One client per annotator: a single client's pool shared by 50 connections cost this process about
    four times the CPU per request (8.7 against 2.1 ms on the 2-core machine), and on a machine with few
    cores the load generator takes CPU from the server it measures. One SSL context serves all clients:
    building one per client is slow and plain HTTP does not use it."""
    tally = Tally()
    context = ssl.create_default_context()
    clients = [httpx.AsyncClient(base_url=base, headers={"authorization": f"Bearer {token}"}, timeout=timeout,
                                 verify=context) for token in tokens]
    try:
        await asyncio.gather(*(client.get("/api/health") for client in clients))
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(annotator(client, deadline, think_ms / 1000, tally, random.Random(seed * 1000 + i))
                               for i, client in enumerate(clients)))
        return tally, time.perf_counter() - started
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))


# ----------------------------------------------------------------------------------------------- checks


def read_back(url: str, overlap: int) -> dict[str, Any]:
    import sqlalchemy as sa

    from annotune.annotate import schema
    from annotune.annotate.db import open_database

    ann, rec = schema.annotations, schema.records
    db = open_database(url, create=False)
    try:
        with db.transaction() as conn:
            ids = {row.id for row in conn.execute(sa.select(ann.c.id))}
            per_record = (sa.select(ann.c.record_id, sa.func.count().label("n"))
                          .group_by(ann.c.record_id).subquery())
            over = conn.execute(sa.select(sa.func.count()).select_from(per_record)
                                .where(per_record.c.n > overlap)).scalar()
            mismatched = conn.execute(
                sa.select(sa.func.count()).select_from(rec.outerjoin(per_record, per_record.c.record_id == rec.c.id))
                .where(rec.c.submitted != sa.func.coalesce(per_record.c.n, 0))).scalar()
            duplicates = conn.execute(sa.select(sa.func.count()).select_from(
                sa.select(ann.c.record_id, ann.c.user_id).group_by(ann.c.record_id, ann.c.user_id)
                .having(sa.func.count() > 1).subquery())).scalar()
    finally:
        db.dispose()
    return {"ids": ids, "over_overlap": over, "submitted_mismatch": mismatched, "same_user_twice": duplicates}


# --------------------------------------------------------------------------------------------- reporting


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile, in the values' unit; NaN for no values."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def latency_summary(values: list[float], elapsed: float) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values)
    return {"requests": len(ms), "per_second": len(ms) / elapsed if elapsed else 0.0,
            "p50_ms": percentile(ms, 50), "p95_ms": percentile(ms, 95), "p99_ms": percentile(ms, 99),
            "max_ms": ms[-1] if ms else float("nan")}


def summarize(backend: str, tally: Tally, elapsed: float, stored: dict[str, Any], cpu: dict[str, float],
              args: argparse.Namespace) -> dict[str, Any]:
    acknowledged = set(tally.acknowledged)
    lost = sorted(acknowledged - stored["ids"])
    overall = latency_summary([v for e in ENDPOINTS for v in tally.latencies[e]], elapsed)
    result = {
        "backend": backend, "users": args.users, "seconds": elapsed, "think_ms": args.think_ms,
        "records": args.records, "overlap": args.overlap, "workers": args.workers,
        "overall": overall,
        "endpoints": {e: latency_summary(tally.latencies[e], elapsed) for e in ENDPOINTS},
        "errors": dict(sorted(tally.errors.items())), "error_count": sum(tally.errors.values()),
        "acknowledged_submits": len(tally.acknowledged),
        "duplicate_acknowledged_ids": len(tally.acknowledged) - len(acknowledged),
        "rows_stored": len(stored["ids"]), "lost": len(lost), "lost_ids": lost[:20],
        "stored_not_acknowledged": len(stored["ids"] - acknowledged),
        "records_over_overlap": stored["over_overlap"], "records_submitted_mismatch": stored["submitted_mismatch"],
        "same_user_twice": stored["same_user_twice"],
        "annotators_out_of_work": tally.queue_empty,
        "cpu_seconds": cpu,
    }
    result["targets"] = {"p95_under_100ms": overall["p95_ms"] < P95_TARGET_MS, "nothing_lost": not lost}
    return result


def print_result(r: dict[str, Any]) -> None:
    think = f"{r['think_ms']:g} ms think time" if r["think_ms"] else "no think time"
    print(f"\n== {r['backend']}: {r['users']} annotators, {r['seconds']:.1f} s, {think}, "
          f"{r['records']} records x overlap {r['overlap']}")
    print(f"{'':8} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    rows = [("all", r["overall"])] + [(e, r["endpoints"][e]) for e in ENDPOINTS]
    for name, s in rows:
        print(f"{name:8} {s['requests']:>9} {s['per_second']:>8.1f} {s['p50_ms']:>8.1f} {s['p95_ms']:>8.1f} "
              f"{s['p99_ms']:>8.1f} {s['max_ms']:>8.1f}")
    errors = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "none"
    print(f"errors: {r['error_count']} ({errors})")
    print(f"acknowledged submits {r['acknowledged_submits']}, rows stored {r['rows_stored']}, lost {r['lost']}, "
          f"stored but not acknowledged {r['stored_not_acknowledged']}")
    print(f"integrity: records over the overlap {r['records_over_overlap']}, records whose submitted count "
          f"differs from their rows {r['records_submitted_mismatch']}, same annotator twice on a record "
          f"{r['same_user_twice']}; annotators that ran out of tasks {r['annotators_out_of_work']}")
    cpu = r["cpu_seconds"]
    print(f"CPU seconds during the load: server {cpu['server']:.1f}, load generator {cpu['generator']:.1f}, "
          f"whole machine {cpu['machine']:.1f} of {cpu['available']:.1f} available; the machine was "
          f"{cpu['machine_busy_before_load']:.0%} busy in the 3 s before the load")
    t = r["targets"]
    print(f"targets: p95 < {P95_TARGET_MS:g} ms {'met' if t['p95_under_100ms'] else 'MISSED'} "
          f"({r['overall']['p95_ms']:.1f} ms); nothing lost {'met' if t['nothing_lost'] else 'MISSED'}")


# ------------------------------------------------------------------------------------------------- main


def cpu_snapshot(server_pid: int) -> tuple[float, float, float, float]:
    """(wall seconds, server CPU (worker processes included), this process's CPU, CPU busy on the whole machine)."""
    parent = psutil.Process(server_pid)
    server = sum(p.cpu_times().user + p.cpu_times().system for p in [parent, *parent.children(recursive=True)])
    me, machine = psutil.Process().cpu_times(), psutil.cpu_times()
    busy = machine.user + machine.nice + machine.system + machine.irq + machine.softirq
    return time.perf_counter(), server, me.user + me.system, busy


def cpu_use(before: tuple[float, ...], after: tuple[float, ...]) -> dict[str, float]:
    wall, server, generator, machine = (b - a for a, b in zip(before, after))
    return {"server": server, "generator": generator, "machine": machine, "available": wall * psutil.cpu_count()}


def run_backend(backend: str, url: str, work: Path, chunks: Path, args: argparse.Namespace) -> dict[str, Any]:
    print(f"[{backend}] setting up {args.users} annotators and {args.records} records ...", flush=True)
    tokens = populate(url, args.users, args.overlap, chunks)
    server = Server(url, work / f"server-{backend}.log", ("--workers", str(args.workers)))
    try:
        server.start()
        # What the rest of the machine uses while this benchmark is idle (the cores may be shared).
        quiet = cpu_snapshot(server.process.pid)
        time.sleep(3)
        before = cpu_snapshot(server.process.pid)
        print(f"[{backend}] server up on {server.url}; {args.seconds:g} s of load ...", flush=True)
        tally, elapsed = asyncio.run(run_load(tokens, server.url, args.seconds, args.think_ms, args.timeout,
                                              args.seed))
        after = cpu_snapshot(server.process.pid)
    finally:
        server.stop()
    cpu = cpu_use(before, after)
    idle = cpu_use(quiet, before)
    cpu["machine_busy_before_load"] = idle["machine"] / idle["available"]
    log = server.log_path.read_text(errors="replace")
    if "Traceback" in log:
        print(f"[{backend}] the server logged {log.count('Traceback')} traceback(s); see {server.log_path}")
    result = summarize(backend, tally, elapsed, read_back(url, args.overlap), cpu, args)
    result["server_tracebacks"] = log.count("Traceback")
    print_result(result)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    meta = {"cpus": psutil.cpu_count(), "load_average_at_start": os.getloadavg(), "command": sys.argv,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="annotune-bench-wb-"))
    work.mkdir(parents=True, exist_ok=True)
    chunks = work / "chunks.jsonl"
    write_chunks(chunks, args.records)
    pg: LocalPostgres | None = None
    results = []
    try:
        for backend in args.backends:
            if backend == "sqlite":
                db_file = work / "workbench.db"
                for leftover in work.glob("workbench.db*"):
                    leftover.unlink()
                results.append(run_backend(backend, f"sqlite:///{db_file}", work, chunks, args))
                continue
            server_url = args.postgres_url
            if server_url is None:
                pg = LocalPostgres()
                server_url = pg.start()
            name = f"bench_{uuid.uuid4().hex[:12]}"
            _admin_sql(server_url, f"CREATE DATABASE {name}")
            try:
                results.append(run_backend(backend, _with_database(server_url, name), work, chunks, args))
            finally:
                _admin_sql(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        if pg is not None:
            pg.stop()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    meta["load_average_at_end"] = os.getloadavg()
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"machine": meta, "results": results}, indent=2) + "\n")
        print(f"\nwrote {args.json_out}")
    return 0 if all(all(r["targets"].values()) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
