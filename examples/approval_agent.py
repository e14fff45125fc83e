"""Example human-in-the-loop agent: tool calls need a human's decision.

Graph: ``START -> agent -> approve -> (tools -> agent | END)``.

The chat model (see :func:`examples.chat_agent.make_model`; created lazily on first use)
proposes ``calculator`` calls. The ``approve`` node pauses the run with ``interrupt(request)``
where ``request`` is the standard human-in-the-loop request of LangChain v1's
``HumanInTheLoopMiddleware`` (``HITLRequest``), one action per pending tool call::

    {
        "action_requests": [
            {"name": "calculator", "args": {"expression": "6*7"},
             "description": "Run calculator with {\\"expression\\": \\"6*7\\"}?"}
        ],
        "review_configs": [
            {"action_name": "calculator", "allowed_decisions": ["approve", "edit", "reject"]}
        ],
    }

Why this shape: LangChain's Agent Chat UI renders an interrupt with Approve / Edit / Reject
buttons only when its value has non-empty ``action_requests`` (each with a string ``name`` and an
object ``args``) and ``review_configs`` (each with a string ``action_name`` and an
``allowed_decisions`` list); anything else gets its read-only generic view. Checked in
langchain-ai/agent-chat-ui: ``src/components/thread/agent-inbox/types.ts`` (``HITLRequest``,
``Decision``), ``agent-inbox/utils.ts`` (buttons built from ``allowed_decisions``; the decision it
sends) and ``agent-inbox/index.tsx`` (``Interrupt<HITLRequest>``), and its detection
``isAgentInboxInterruptSchema`` in ``src/lib/agent-inbox-interrupt.ts`` (read in a copy in
another repository: the searchable upstream tree lacked that file). Its resume is
``{"decisions": [decision]}``; its reject button wants a message (ours makes it optional). The
same types and resume handling are in
langchain-ai/langchain ``libs/langchain_v1/langchain/agents/middleware/human_in_the_loop.py``.
The older Agent Inbox shape (a list of ``{"action_request": {"action", "args"}, "config":
{"allow_accept", ...}, "description"}``) is what older Agent Chat UI builds rendered; the
current one no longer does, so it is not used here.

Resume with ``Command(resume=...)``; accepted values:

1. The standard answer ``{"decisions": [decision, ...]}``, one decision per action request, in
   order:

   * ``{"type": "approve"}`` runs the tool call as proposed;
   * ``{"type": "edit", "edited_action": {"name": "calculator", "args": {...}}}`` runs it with
     the edited args. The AI message's tool call is rewritten in place (same message id, same
     tool call id) so the history shows what actually ran and stays valid for providers;
   * ``{"type": "reject", "message": "..."}`` (``message`` optional) does not run it: a
     ``ToolMessage`` with ``status="error"`` and the message (default :data:`REJECTED`) closes
     the tool call.

   When every call is rejected the run ends with the AI message :data:`CANCELLED`; otherwise the
   approved/edited calls run and the model answers from all the tool messages.
2. A bare decision (``{"type": "approve"}`` ...) for a single action request.
3. For backwards compatibility, the old simple answers: ``True``, ``"yes"`` (also "y", "ok",
   "approve", ...) or ``{"approved": True}`` approve every call; any other value (``False``,
   ``"no"``, ``None``, ...) rejects every call without a message.

An answer that has ``"decisions"`` (or ``"type"``) but cannot be applied (wrong count, an unknown
decision type, an edit naming an unknown tool or with args the tool's schema refuses) is not an
error: the node asks again with the same request, each description prefixed with what was wrong.
(Difference from the middleware, which raises ``ValueError``: a failed run would leave the thread
in ``error`` with the question unanswerable.)

The module exports ``graph``, compiled without a checkpointer (interrupts need one; the server
attaches its own).
"""

from __future__ import annotations

import json
from typing import Any, Literal, NotRequired, TypedDict, cast

from langchain_core.messages import AIMessage, BaseMessage, ToolCall, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.types import Command, interrupt
from pydantic import BaseModel, ValidationError

from examples.chat_agent import TOOLS, bound_model

DecisionType = Literal["approve", "edit", "reject"]

CANCELLED = "Cancelled: the calculator was not run."
REJECTED = "Rejected by the user."
DECISIONS: list[DecisionType] = ["approve", "edit", "reject"]
_YES = {"y", "yes", "true", "ok", "okay", "approve", "approved", "run", "1"}
_TOOLS: dict[str, BaseTool] = {t.name: t for t in TOOLS}
_TOOL_NODE = ToolNode(TOOLS)


class ActionRequest(TypedDict):
    """One tool call up for review: ``{"name", "args", "description"}``."""

    name: str
    args: dict[str, Any]
    description: NotRequired[str]


class ReviewConfig(TypedDict):
    """What the reviewer may do with the actions named ``action_name``."""

    action_name: str
    allowed_decisions: list[DecisionType]


class HITLRequest(TypedDict):
    """The interrupt value: ``{"action_requests": [...], "review_configs": [...]}``."""

    action_requests: list[ActionRequest]
    review_configs: list[ReviewConfig]


class Decision(TypedDict):
    """A checked decision: ``type``, the call to run (approve/edit) or the reject message."""

    type: DecisionType
    call: ToolCall
    message: NotRequired[str]


class AnswerError(ValueError):
    """A resume value in the standard shape that cannot be applied (the node asks again)."""


def is_approved(value: Any) -> bool:
    """Interpret an old-style (non-standard) resume value as approval."""
    if isinstance(value, str):
        return value.strip().lower() in _YES
    if isinstance(value, dict):
        return is_approved(value.get("approved", False))
    return bool(value)


def hitl_request(calls: list[ToolCall], problem: str | None = None) -> HITLRequest:
    """The standard request for ``calls``; ``problem`` (the last answer's fault) prefixes
    each description."""
    actions: list[ActionRequest] = []
    for call in calls:
        text = f"Run {call['name']} with {json.dumps(call['args'])}?"
        if problem:
            text = f"{problem} {text}"
        actions.append({"name": call["name"], "args": call["args"], "description": text})
    configs: list[ReviewConfig] = [
        {"action_name": call["name"], "allowed_decisions": list(DECISIONS)} for call in calls
    ]
    return {"action_requests": actions, "review_configs": configs}


def _checked_args(name: str, args: Any) -> dict[str, Any]:
    if not isinstance(args, dict):
        raise AnswerError(f"The edited args must be a JSON object, not {args!r}.")
    schema = _TOOLS[name].args_schema
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        try:
            schema.model_validate(args)
        except ValidationError as exc:
            errors = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise AnswerError(f"The edited args do not fit {name}: {errors}.") from None
    return dict(args)


def _decision(raw: Any, call: ToolCall) -> Decision:
    """Check one standard decision against the tool call it answers."""
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "approve":
        return {"type": "approve", "call": call}
    if kind == "reject":
        message = raw.get("message")
        text = message.strip() if isinstance(message, str) else ""
        return {"type": "reject", "call": call, "message": text or REJECTED}
    if kind == "edit":
        action = raw.get("edited_action")
        if not isinstance(action, dict):
            raise AnswerError('An edit needs "edited_action": {"name", "args"}.')
        name = action.get("name", call["name"])
        if name not in _TOOLS:
            raise AnswerError(f"Unknown tool {name!r} in the edit (known: {', '.join(_TOOLS)}).")
        args = _checked_args(name, action.get("args"))
        edited = ToolCall(name=name, args=args, id=call["id"], type="tool_call")
        return {"type": "edit", "call": edited}
    raise AnswerError(f"Unknown decision {raw!r}: use approve, edit or reject.")


def read_answer(answer: Any, calls: list[ToolCall]) -> list[Decision]:
    """Turn a resume value into one checked decision per call (see the module docstring).

    Raises:
        AnswerError: a standard-shaped answer that cannot be applied.
    """
    if isinstance(answer, dict) and "decisions" in answer:
        raw = answer["decisions"]
        if not isinstance(raw, list) or len(raw) != len(calls):
            count = len(raw) if isinstance(raw, list) else "no list of"
            raise AnswerError(f"Expected {len(calls)} decision(s), got {count}.")
        return [_decision(d, c) for d, c in zip(raw, calls, strict=True)]
    if isinstance(answer, dict) and "type" in answer:
        if len(calls) != 1:
            raise AnswerError(f'Expected {{"decisions": [...]}} with {len(calls)} decisions.')
        return [_decision(answer, calls[0])]
    kind: DecisionType = "approve" if is_approved(answer) else "reject"
    return [_decision({"type": kind}, c) for c in calls]


async def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
    """Ask the chat model for the next message."""
    return {"messages": [await bound_model().ainvoke(state["messages"])]}


def route_after_agent(state: MessagesState) -> str:
    """Tool calls need approval; plain answers end the run."""
    last = state["messages"][-1]
    return "approve" if isinstance(last, AIMessage) and last.tool_calls else END


def approve(state: MessagesState) -> Command[Literal["tools", "__end__"]]:
    """Pause for a human decision on the pending tool calls; apply it.

    Update: the AI message with its tool calls as decided (edits applied; same id, so it
    replaces the original), then one error ``ToolMessage`` per rejected call, plus
    :data:`CANCELLED` when nothing is left to run. Goes to ``tools`` when something is.
    """
    last = state["messages"][-1]
    assert isinstance(last, AIMessage)
    calls = list(last.tool_calls)
    request = hitl_request(calls)
    while True:  # each pass is one interrupt(); a resumed node replays the earlier answers
        try:
            decisions = read_answer(interrupt(request), calls)
            break
        except AnswerError as exc:
            request = hitl_request(calls, problem=f"Not applied: {exc}")
    revised = last.model_copy(update={"tool_calls": [d["call"] for d in decisions]})
    rejected: list[BaseMessage] = [
        ToolMessage(
            content=d.get("message", REJECTED),
            tool_call_id=str(d["call"]["id"]),
            name=d["call"]["name"],
            status="error",
        )
        for d in decisions
        if d["type"] == "reject"
    ]
    if len(rejected) == len(decisions):
        return Command(  # "__end__" is END, spelled as the Literal the annotation names
            goto="__end__", update={"messages": [revised, *rejected, AIMessage(content=CANCELLED)]}
        )
    return Command(goto="tools", update={"messages": [revised, *rejected]})


async def tools(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
    """Run the last AI message's tool calls that no ``ToolMessage`` answers yet (the rejected
    ones are answered already), through LangGraph's ``ToolNode`` (tool errors become error
    ``ToolMessage``s)."""
    messages = state["messages"]
    at = max(i for i, m in enumerate(messages) if isinstance(m, AIMessage))
    ai = cast(AIMessage, messages[at])
    answered = {m.tool_call_id for m in messages[at + 1 :] if isinstance(m, ToolMessage)}
    pending = [c for c in ai.tool_calls if c["id"] not in answered]
    only_pending = ai.model_copy(update={"tool_calls": pending})
    result: dict[str, Any] = await _TOOL_NODE.ainvoke({"messages": [only_pending]}, config)
    return result


builder = StateGraph(MessagesState)
builder.add_node("agent", agent)
builder.add_node("approve", approve)
builder.add_node("tools", tools)
builder.add_edge(START, "agent")
builder.add_conditional_edges("agent", route_after_agent, ["approve", END])
builder.add_edge("tools", "agent")

graph = builder.compile(name="approval_agent")
