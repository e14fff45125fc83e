"""Schedule ``report_agent`` with the official Python SDK and print its reports.

    python examples/schedule_report.py [--url http://127.0.0.1:8123] [--schedule "@every 10s"]
                                       [--fires 3] [--webhook https://hooks.example.com/x]

Creates a thread and a cron on it (``client.crons.create_for_thread``), waits until the cron
has fired ``--fires`` times, prints each report, then deletes the cron (the thread and its
reports stay). ``--schedule`` takes any cron expression (``0 9 * * 1-5`` with ``--timezone
Europe/Berlin``: weekdays at 09:00 Berlin time) or ``@every <duration>`` / ``@at <time>``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from langgraph_sdk import get_client


async def main(args: argparse.Namespace) -> int:
    client = get_client(url=args.url)
    thread = await client.threads.create(metadata={"example": "schedule_report"})
    thread_id = str(thread["thread_id"])
    options: dict[str, Any] = {"schedule": args.schedule, "timezone": args.timezone,
                               "input": {"messages": [{"role": "user", "content": args.note}]},
                               "metadata": {"example": "schedule_report"}}
    if args.webhook:
        options["webhook"] = args.webhook
    cron: Any = await client.crons.create_for_thread(thread_id, "report_agent", **options)
    print(f"cron {cron['cron_id']} on thread {thread_id}; next run {cron['next_run_date']}")
    seen = 0
    try:
        while seen < args.fires:
            runs = [r for r in await client.runs.list(thread_id, limit=100)
                    if r["status"] == "success"]
            if len(runs) > seen:
                state = await client.threads.get_state(thread_id)
                reports = [m["content"] for m in state["values"]["messages"]
                           if m["type"] == "ai"]
                for text in reports[seen:len(runs)]:
                    print(text)
                seen = len(runs)
            await asyncio.sleep(0.5)
    finally:
        await client.crons.delete(cron["cron_id"])
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8123")
    parser.add_argument("--schedule", default="@every 10s")
    parser.add_argument("--timezone", default=None)
    parser.add_argument("--fires", type=int, default=3)
    parser.add_argument("--note", default="disk usage is at 71%")
    parser.add_argument("--webhook", default=None)
    sys.exit(asyncio.run(main(parser.parse_args())))
