"""runtime/serialization.py: event payloads are encoded once and kept in run logs for
``stream_retention_s``, so what ``dumps`` returns must hold no more memory than its bytes; and
LangChain messages, encoded through a fast path, come out exactly as their ``model_dump``."""

from __future__ import annotations

import tracemalloc
from typing import Any

import orjson
import pytest

from runtime.serialization import dumps, loads

pytestmark = pytest.mark.timeout(20)


def _held_per_item(make: object, n: int) -> float:
    """Bytes still allocated per result after ``n`` calls of ``make(i)``, results kept."""
    assert callable(make)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [make(i) for i in range(n)]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(kept) == n
    return held / n


def test_a_small_event_holds_about_its_size() -> None:
    """orjson's own result of ``{"i": 1}`` held a 4 KB buffer; a run log keeps thousands."""
    assert loads(dumps({"i": 1})) == {"i": 1}
    assert _held_per_item(lambda i: dumps({"i": i}), 2000) < 200


def test_a_long_event_holds_about_its_size() -> None:
    """For a 30 KB string orjson held several times the output."""
    text = "x" * 30_000
    assert _held_per_item(lambda i: dumps({"text": text, "i": i}), 50) < 1.2 * 30_000


def test_messages_encode_exactly_as_their_model_dump() -> None:
    """The fast path for LangChain messages (``__dict__`` + extras, not ``model_dump``) gives
    the same bytes as ``model_dump`` for every message class and every kind of field."""
    import inspect

    import langchain_core.messages as lc

    tool_call = {"name": "calc", "args": {"x": [1, 2.5, None]}, "id": "c1", "type": "tool_call"}
    usage = {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}
    samples: list[Any] = [
        lc.HumanMessage(content="plain", id="h1"),
        lc.HumanMessage(content=[{"type": "text", "text": "é ✓"}, {"type": "image_url",
                                                                  "image_url": {"url": "x"}}]),
        lc.HumanMessage(content="extra fields", custom={"nested": [1, {"a": None}]}),
        lc.AIMessage(content="", tool_calls=[tool_call], usage_metadata=usage,
                     response_metadata={"model": "m", "stop": None}, name="bot"),
        lc.AIMessageChunk(content="par", id="x", tool_call_chunks=[
            {"name": "calc", "args": '{"x":', "id": "c1", "index": 0}]),
        lc.ToolMessage(content="4", tool_call_id="c1", artifact={"raw": [1]}, status="error"),
        lc.SystemMessage(content="sys"),
        lc.ChatMessage(content="c", role="critic"),
        lc.FunctionMessage(content="f", name="fn"),
        lc.RemoveMessage(id="h1"),
        lc.AIMessage(content="nested model", additional_kwargs={
            "inner": lc.HumanMessage(content="inner", id="i")}),
    ]
    classes = {cls for _, cls in inspect.getmembers(lc, inspect.isclass)
               if issubclass(cls, lc.BaseMessage) and cls is not lc.BaseMessage
               and cls is not lc.BaseMessageChunk}
    assert classes <= {type(m) for m in samples} | {
        lc.ChatMessageChunk, lc.FunctionMessageChunk, lc.HumanMessageChunk,
        lc.SystemMessageChunk, lc.ToolMessageChunk}, classes
    for message in samples:
        expected = orjson.dumps(message.model_dump(), default=lambda o: o.model_dump(),
                                option=orjson.OPT_NON_STR_KEYS)
        assert dumps(message) == expected, message
        assert dumps({"messages": [message]}) == b'{"messages":[' + dumps(message) + b"]}"


def test_memo_dumps_reuses_a_message_until_a_field_changes() -> None:
    """``MemoDumps`` converts a message once per run, but a field reassigned in place (a node
    editing ``m.content``) or a list changed in place shows in the next encoding."""
    import langchain_core.messages as lc

    from runtime.serialization import MemoDumps

    memo = MemoDumps()
    message = lc.AIMessage(content="first", id="a1", tool_calls=[])
    state = {"messages": [message]}
    assert memo(state) == dumps(state)
    assert memo(state) == dumps(state)  # a hit: the same bytes
    message.content = "second"
    assert b'"second"' in memo(state) and memo(state) == dumps(state)
    message.additional_kwargs["k"] = 1  # in place: the same dict object
    assert memo(state) == dumps(state)
    message.custom_extra = "x"  # type: ignore[attr-defined]  # an extra field added
    assert memo(state) == dumps(state)
