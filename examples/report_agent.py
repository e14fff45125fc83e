"""Example scheduled agent: a monitor that writes a status report each time it runs.

Graph: ``START -> report -> END`` on ``MessagesState``. Run it on a schedule with a cron
(``examples/schedule_report.py`` does it with the official SDK): every fire appends one
``AIMessage`` to the thread, ``"Report #<n> (<UTC time>): <k> note(s) so far; last: <text>"``,
counting the notes (human messages) the thread has received. Give it a note in the cron's
``input`` (``{"messages": [{"role": "user", "content": "..."}]}``) or post one to the thread
between fires; a ``webhook`` on the cron receives each finished run (README, Webhooks).

It calls no model and no network, so it runs anywhere; swap ``report`` for your own node (a
model that summarises a mailbox, a check of a service) and keep the schedule.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import END, START, MessagesState, StateGraph


async def report(state: MessagesState) -> dict[str, Any]:
    """Append the next report: how many reports and notes the thread has, and the last note."""
    messages = state["messages"]
    notes = [m for m in messages if isinstance(m, HumanMessage)]
    number = sum(1 for m in messages if isinstance(m, AIMessage)) + 1
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    last = str(notes[-1].content) if notes else "none"
    text = f"Report #{number} ({when} UTC): {len(notes)} note(s) so far; last: {last}"
    return {"messages": [AIMessage(content=text)]}


builder = StateGraph(MessagesState)
builder.add_node("report", report)
builder.add_edge(START, "report")
builder.add_edge("report", END)
graph = builder.compile(name="report_agent")
