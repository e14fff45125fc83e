"""The report: the comparison table, the issue-6 targets, and the JSON file.

Ratios are plain quotients ``ours / other`` of the row's figure: for rates (``/s``) higher is
better, for latencies (``ms``), memory (``MB``, ``KB``) and growth (``x``) lower is better.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

Getter = Callable[[dict[str, Any]], Any]


def dig(data: dict[str, Any] | None, path: str) -> Any:
    """``dig(d, "a.b.c")`` = ``d["a"]["b"]["c"]`` or None if any step is missing."""
    cur: Any = data
    for key in path.split("."):
        if not isinstance(cur, dict) or key not in cur:
            return None
        cur = cur[key]
    return cur


# (label, path in a server's results, path in the limits results)
ROWS: list[tuple[str, str | None, str | None]] = [
    ("/runs/wait c=1 runs/s", "wait.c1.per_s", "sqlite.c1.per_s"),
    ("/runs/wait c=1 p50 ms", "wait.c1.p50_ms", "sqlite.c1.p50_ms"),
    ("/runs/wait c=1 p99 ms", "wait.c1.p99_ms", "sqlite.c1.p99_ms"),
    ("/runs/wait c=8 runs/s", "wait.c8.per_s", "sqlite.c8.per_s"),
    ("/runs/wait c=8 p50 ms", "wait.c8.p50_ms", "sqlite.c8.p50_ms"),
    ("/runs/wait c=8 p99 ms", "wait.c8.p99_ms", "sqlite.c8.p99_ms"),
    ("/runs/wait c=8 server CPU ms/run", "wait.c8.cpu_ms_per_run", "sqlite.c8.cpu_ms_per_run"),
    ("/runs/wait c=32 runs/s", "wait.c32.per_s", None),
    ("/runs/wait c=32 p50 ms", "wait.c32.p50_ms", None),
    ("/runs/wait c=32 p99 ms", "wait.c32.p99_ms", None),
    ("/runs/wait c=32 server CPU ms/run", "wait.c32.cpu_ms_per_run", None),
    ("/runs/wait 200 at once runs/s", "wait.burst.per_s", None),
    ("/runs/wait 200 at once p50 ms", "wait.burst.p50_ms", None),
    ("/runs/wait 200 at once errors", "wait.burst.errors", None),
    ("limit: ainvoke stock AsyncSqliteSaver c=1 runs/s", None, "stock.c1.per_s"),
    ("limit: ainvoke stock AsyncSqliteSaver c=1 p50 ms", None, "stock.c1.p50_ms"),
    ("limit: ainvoke stock AsyncSqliteSaver c=8 runs/s", None, "stock.c8.per_s"),
    ("limit: ainvoke stock AsyncSqliteSaver c=8 CPU ms/run", None, "stock.c8.cpu_ms_per_run"),
    ("limit: ainvoke InMemorySaver c=1 runs/s", None, "memory.c1.per_s"),
    ("limit: ainvoke InMemorySaver c=8 runs/s", None, "memory.c8.per_s"),
    ("GET /ok c=8 req/s (limit: bare GET)", "get_ok.per_s", "bare.get_c8.per_s"),
    ("/runs/stream first event p50 ms", "stream.first_p50_ms", "bare.sse.first_p50_ms"),
    ("limit: astream first values chunk p50 ms", None, "sqlite.astream.first_p50_ms"),
    ("/runs/stream total p50 ms", "stream.total_p50_ms", None),
    ("SSE custom events/s, 1 client", "sse.events_per_s", "bare.sse.events_per_s"),
    ("limit: astream custom events/s", None, "sqlite.astream.events_per_s"),
    ("SSE events/s incl. run start", "sse.events_per_s_incl_start", None),
    ("fan-out 1 joiner events/s", "fanout.j1.events_per_s", None),
    ("fan-out 10 joiners events/s", "fanout.j10.events_per_s", None),
    ("fan-out 100 joiners events/s", "fanout.j100.events_per_s", None),
    ("fan-out 100 lossless", "fanout.j100.lossless", None),
    ("fan-out 100 peak RSS MB", "fanout.j100.rss_peak_mb", None),
    ("fan-out 100 RSS growth during the run MB", "fanout.j100.rss_growth_mb", None),
    ("idle streams open", "idle.connections", None),
    ("idle stream RSS KB/connection", "idle.kb_per_connection", None),
    ("idle: RSS before runs MB", "idle.rss_before_mb", "bare.rss_mb"),
    ("idle: RSS with streams open MB", "idle.rss_open_mb", None),
    ("idle: RSS after round 1 ends, growth MB", "idle.rss_growth_after_mb", None),
    ("idle: RSS growth over an identical round 2 MB", "idle.rss_growth_round2_mb", None),
    ("run create p50 ms @1k threads", "growth.n1000.run_create_p50_ms", None),
    ("run create p50 ms @10k threads", "growth.n10000.run_create_p50_ms", None),
    ("run create growth 1k->10k x", "growth.run_create_growth", None),
    ("thread search p50 ms @1k", "growth.n1000.search_p50_ms", None),
    ("thread search p50 ms @10k", "growth.n10000.search_p50_ms", None),
    ("thread search growth 1k->10k x", "growth.search_growth", None),
    ("run list p50 ms @1k", "growth.n1000.list_runs_p50_ms", None),
    ("run list p50 ms @10k", "growth.n10000.list_runs_p50_ms", None),
    ("run list growth 1k->10k x", "growth.list_runs_growth", None),
    # the long thread (bench/longthread.py): one thread, b.long_turns sequential /runs/wait of
    # the echo graph; limit: ainvoke with the stock AsyncSqliteSaver (PostgreSQL's below)
    ("long thread turns", "longthread.turns", "longthread.sqlite.turns"),
    ("long thread /runs/wait p50 ms, turns 1-10", "longthread.first_p50_ms",
     "longthread.sqlite.first_p50_ms"),
    ("long thread /runs/wait p50 ms, last 10 turns", "longthread.last_p50_ms",
     "longthread.sqlite.last_p50_ms"),
    ("long thread growth last/first x", "longthread.growth", "longthread.sqlite.growth"),
    ("long thread server CPU ms/run, turns 1-10", "longthread.first_cpu_ms_per_run",
     "longthread.sqlite.first_cpu_ms_per_run"),
    ("long thread server CPU ms/run, last 10 turns", "longthread.last_cpu_ms_per_run",
     "longthread.sqlite.last_cpu_ms_per_run"),
    ("long thread final state KB", "longthread.state_kb", "longthread.sqlite.state_kb"),
    ("limit: long thread ainvoke AsyncPostgresSaver p50 ms, turns 1-10", None,
     "longthread.postgres.first_p50_ms"),
    ("limit: long thread ainvoke AsyncPostgresSaver p50 ms, last 10 turns", None,
     "longthread.postgres.last_p50_ms"),
    ("limit: long thread ainvoke AsyncPostgresSaver growth x", None,
     "longthread.postgres.growth"),
    ("limit: long thread ainvoke AsyncPostgresSaver CPU ms/run, turns 1-10", None,
     "longthread.postgres.first_cpu_ms_per_run"),
    ("limit: long thread ainvoke AsyncPostgresSaver CPU ms/run, last 10 turns", None,
     "longthread.postgres.last_cpu_ms_per_run"),
]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"
    return str(value)


def _ratio(a: Any, b: Any) -> str:
    if isinstance(a, bool) or isinstance(b, bool) or not a or not b:
        return "-"
    if not isinstance(a, int | float) or not isinstance(b, int | float):
        return "-"
    return f"{a / b:.3g}x"


def table_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One dict per row: scenario, ours, ours with ``bridge: sqlite``, ours on PostgreSQL +
    Redis with 1, 2 and 3 processes, reference, limit, ratios."""
    rows = []
    for label, path, limit_path in ROWS:
        ours = dig(results.get("ours"), path) if path else None
        ours_sqlite = dig(results.get("ours_sqlite"), path) if path else None
        ours_pg = dig(results.get("ours_pg"), path) if path else None
        ours_pg2 = dig(results.get("ours_pg2"), path) if path else None
        ours_pg3 = dig(results.get("ours_pg3"), path) if path else None
        ref = dig(results.get("reference"), path) if path else None
        limit = dig(results.get("limits"), limit_path) if limit_path else None
        rows.append({"scenario": label, "ours": ours, "ours_sqlite": ours_sqlite,
                     "reference": ref, "limit": limit,
                     "ours_over_limit": _ratio(ours, limit), "ours_over_ref": _ratio(ours, ref),
                     "sqlite_over_memory": _ratio(ours_sqlite, ours),
                     "ours_pg": ours_pg, "pg_over_sqlite": _ratio(ours_pg, ours),
                     "ours_pg2": ours_pg2, "ours_pg3": ours_pg3,
                     "pg3_over_pg1": _ratio(ours_pg3, ours_pg)})
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    head = ["scenario", "ours", "reference", "limit", "ours/limit", "ours/ref",
            "ours, sqlite bridge", "sqlite/memory", "ours, PG + Redis", "PG/SQLite",
            "PG, 2 proc", "PG, 3 proc", "3 proc/1"]
    body = [[r["scenario"], _fmt(r["ours"]), _fmt(r["reference"]), _fmt(r["limit"]),
             r["ours_over_limit"], r["ours_over_ref"], _fmt(r.get("ours_sqlite")),
             r.get("sqlite_over_memory", "-"), _fmt(r.get("ours_pg")),
             r.get("pg_over_sqlite", "-"), _fmt(r.get("ours_pg2")), _fmt(r.get("ours_pg3")),
             r.get("pg3_over_pg1", "-")] for r in rows]
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for row in body:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:],
                                                                          strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _target(name: str, ok: bool | None, detail: str) -> dict[str, Any]:
    return {"target": name, "met": ok, "detail": detail}


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue-6 targets, each ``met`` True/False (None: not measurable in this run)."""
    o, r, lim = results.get("ours"), results.get("reference"), results.get("limits")
    out = []

    def ratio_target(name: str, a: Any, b: Any, bound: float, at_most: bool, what: str) -> None:
        if not a or not b:
            out.append(_target(name, None, "not measured"))
            return
        x = a / b
        ok = x <= bound if at_most else x >= bound
        out.append(_target(name, ok, f"{x:.2f}x {what} (target {'<=' if at_most else '>='} "
                                     f"{bound}x)"))

    ratio_target("/runs/wait c=1 p50 <= 2x in-process ainvoke (SQLite)",
                 dig(o, "wait.c1.p50_ms"), dig(lim, "sqlite.c1.p50_ms"), 2.0, True, "of limit")
    ratio_target("/runs/wait c=8 >= 70% of in-process ainvoke (SQLite)",
                 dig(o, "wait.c8.per_s"), dig(lim, "sqlite.c8.per_s"), 0.7, False, "of limit")
    ref_best = max((v for v in (dig(r, f"wait.{k}.per_s") for k in ("c1", "c8", "c32", "burst"))
                    if v), default=None)
    ratio_target("/runs/wait c=8 >= 1.5x the reference's best runs/s",
                 dig(o, "wait.c8.per_s"), ref_best, 1.5, False, "of reference best")
    ttfe = dig(o, "stream.first_p50_ms")
    out.append(_target("/runs/stream first event p50 <= 20 ms", None if ttfe is None
                       else ttfe <= 20, f"{_fmt(ttfe)} ms"))
    ratio_target("SSE to one client >= 50% of bare sse-starlette", dig(o, "sse.events_per_s"),
                 dig(lim, "bare.sse.events_per_s"), 0.5, False, "of bare")
    lossless = dig(o, "fanout.j100.lossless")
    out.append(_target("fan-out 100: lossless", lossless,
                       f"min received {dig(o, 'fanout.j100.min_received')}"))
    ratio_target("fan-out 100: >= 5x the reference's rate", dig(o, "fanout.j100.events_per_s"),
                 dig(r, "fanout.j100.events_per_s"), 5.0, False, "of reference")
    burst, c8 = dig(o, "wait.burst"), dig(o, "wait.c8.per_s")
    if burst and c8:
        ok = burst["errors"] == 0 and burst["per_s"] >= c8
        out.append(_target("200 concurrent /runs/wait: no errors, runs/s >= c=8", ok,
                           f"{burst['errors']} errors, {burst['per_s'] / c8:.2f}x of c=8"))
    kb = dig(o, "idle.kb_per_connection")
    out.append(_target("RSS per idle open stream < 50 KB", None if kb is None else kb < 50,
                       f"{_fmt(kb)} KB"))
    grow, base = dig(o, "idle.rss_growth_round2_mb"), dig(o, "idle.rss_after_mb")
    if grow is not None and base:
        bound = max(2.0, 0.02 * base)
        out.append(_target("RSS flat after runs end (round 2 of idle streams adds nothing)",
                           grow <= bound, f"{grow:+.1f} MB after round 2 vs after round 1 "
                           f"(flat = <= {bound:.1f} MB; round 1 left "
                           f"{dig(o, 'idle.rss_growth_after_mb'):+.1f} MB)"))
    for key, label in (("run_create", "run create"), ("search", "thread search")):
        g = dig(o, f"growth.{key}_growth")
        out.append(_target(f"{label} latency grows < 2x from 1k to 10k threads",
                           None if g is None else g < 2, f"{_fmt(g)}x"))
    for column, saver, label in (("ours", "sqlite", "SQLite"),
                                 ("ours_pg", "postgres", "PostgreSQL")):
        ratio_target("long thread: last-window /runs/wait p50 <= in-process ainvoke "
                     f"(same saver), {label}",
                     dig(results.get(column), "longthread.last_p50_ms"),
                     dig(lim, f"longthread.{saver}.last_p50_ms"), 1.0, True,
                     f"of ainvoke with the {label} saver at turn "
                     f"{dig(results.get(column), 'longthread.turns')}")
    return out


def format_targets(items: list[dict[str, Any]]) -> str:
    mark = {True: "MET ", False: "MISS", None: "n/a "}
    return "\n".join(f"  [{mark[t['met']]}] {t['target']}: {t['detail']}" for t in items)


def write_json(payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / (time.strftime("%Y%m%d-%H%M%S") + ".json")
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path
