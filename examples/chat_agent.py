"""Example chat agent: a tool-calling loop on ``MessagesState``.

Graph: ``START -> agent -> (tools -> agent)* -> END``. The ``agent`` node calls
a chat model with the ``calculator`` tool bound; ``tools`` runs the requested
tool calls.

Chat model selection (see :func:`make_model`):

* By default an offline, deterministic :class:`ScriptedChatModel` is used. It
  needs no network or API key and streams its answers token by token, so the
  ``messages`` stream mode shows real incremental chunks.
* Set ``GATEWAY_CHAT_MODEL=<provider>:<model>`` (e.g. ``openai:gpt-4o-mini``)
  to use a real provider through ``langchain.chat_models.init_chat_model``.
  This needs ``pip install langchain`` plus the provider package (for example
  ``langchain-openai``) and the provider's credentials (``OPENAI_API_KEY``).

The module exports ``graph``, compiled without a checkpointer: the server
attaches its own.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import json
import math
import operator
import os
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode

# --------------------------------------------------------------------------
# calculator tool
# --------------------------------------------------------------------------

MAX_EXPRESSION_LENGTH = 200
MAX_EXPONENT = 100
MAX_INT_BITS = 4096

_BIN_OPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY_OPS: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


class CalculatorError(ValueError):
    """Raised for expressions the calculator refuses to evaluate."""


def _check_size(value: float) -> float:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise CalculatorError("result is too large")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError("result is too large")
    return value


def _eval_node(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _eval_node(node.body)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise CalculatorError(f"unsupported constant {node.value!r}")
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY_OPS:
        return _UNARY_OPS[type(node.op)](_eval_node(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN_OPS:
        left, right = _eval_node(node.left), _eval_node(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise CalculatorError(f"exponent {right} is too large (max {MAX_EXPONENT})")
        return _check_size(_BIN_OPS[type(node.op)](left, right))
    raise CalculatorError(f"unsupported syntax: {type(node).__name__}")


def evaluate(expression: str) -> float:
    """Safely evaluate an arithmetic expression; raise ``CalculatorError``."""
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise CalculatorError("expression is too long")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise CalculatorError(f"invalid expression: {exc.msg}") from None
    try:
        value = _eval_node(tree)
    except ZeroDivisionError:
        raise CalculatorError("division by zero") from None
    except OverflowError:
        raise CalculatorError("result is too large") from None
    if isinstance(value, complex):
        raise CalculatorError("result is not a real number")
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return int(value)
    return value


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression such as ``12*(3+4)``.

    Supports numbers, + - * / // % **, unary minus and parentheses.
    """
    try:
        return str(evaluate(expression))
    except CalculatorError as exc:
        return f"Error: {exc}"


TOOLS = [calculator]

# --------------------------------------------------------------------------
# scripted offline chat model
# --------------------------------------------------------------------------

_EXPR_RE = re.compile(r"[\d(.\-+][\d\s.+\-*/%()]*[\d)]")
_OP_RE = re.compile(r"\d\s*(?:\*\*|//|[-+*/%])\s*[\d(.\-+]")


def find_expression(text: str) -> str | None:
    """Return the first arithmetic expression found in ``text``, if any."""
    for match in _EXPR_RE.finditer(text):
        expr = match.group().strip()
        while expr.endswith(")") and expr.count(")") > expr.count("("):
            expr = expr[:-1].rstrip()
        if _OP_RE.search(expr):
            return expr
    return None


def _text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return " ".join(
        part if isinstance(part, str) else str(part.get("text", "")) for part in content
    )


class ScriptedChatModel(BaseChatModel):
    """Deterministic offline chat model that knows one tool: ``calculator``.

    * last message is human and contains arithmetic -> a ``calculator`` call;
    * last message is a tool result -> "The result is <result>.";
    * otherwise -> a friendly echo of the user's text.

    Text answers are streamed word by word; ``token_delay`` (seconds) adds a
    pause between tokens on the async path to make streaming visible.
    """

    token_delay: float = 0.0

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        return self

    def _reply(self, messages: list[BaseMessage]) -> AIMessageChunk:
        last = messages[-1] if messages else HumanMessage(content="")
        if isinstance(last, ToolMessage):
            result = _text(last)
            if result.startswith("Error"):
                return AIMessageChunk(
                    content=f"Sorry, I could not compute that. {result}"
                )
            return AIMessageChunk(content=f"The result is {result}.")
        text = _text(last).strip()
        if isinstance(last, HumanMessage) and (expr := find_expression(text)):
            call = {
                "name": "calculator",
                "args": json.dumps({"expression": expr}),
                "id": f"call_{uuid.uuid4().hex[:16]}",
                "index": 0,
                "type": "tool_call_chunk",
            }
            return AIMessageChunk(content="", tool_call_chunks=[call])
        return AIMessageChunk(
            content=f"You said: {text.rstrip('.!?')}. Ask me some arithmetic, like 2+2."
        )

    def _chunks(self, messages: list[BaseMessage]) -> Iterator[ChatGenerationChunk]:
        reply = self._reply(messages)
        if reply.tool_call_chunks:
            yield ChatGenerationChunk(message=reply)
            return
        for token in re.findall(r"\S+\s*", str(reply.content)):
            yield ChatGenerationChunk(message=AIMessageChunk(content=token))

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        reply = self._reply(messages)
        message = AIMessage(content=reply.content, tool_calls=reply.tool_calls)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for chunk in self._chunks(messages):
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._chunks(messages):
            if run_manager:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
            await asyncio.sleep(self.token_delay)


def make_model() -> BaseChatModel:
    """Return the chat model selected by ``GATEWAY_CHAT_MODEL`` (default: scripted)."""
    spec = os.environ.get("GATEWAY_CHAT_MODEL", "").strip()
    if not spec or spec == "scripted":
        return ScriptedChatModel()
    try:
        from langchain.chat_models import init_chat_model
    except ImportError as exc:
        raise RuntimeError(
            f"GATEWAY_CHAT_MODEL={spec!r} needs the 'langchain' package and the "
            "provider integration (e.g. 'pip install langchain langchain-openai')."
        ) from exc
    return init_chat_model(spec)


# --------------------------------------------------------------------------
# graph
# --------------------------------------------------------------------------


@functools.cache
def bound_model() -> Runnable[LanguageModelInput, BaseMessage]:
    """The configured chat model with ``TOOLS`` bound, created on first use."""
    return make_model().bind_tools(TOOLS)


async def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
    """Ask the chat model for the next message."""
    response = await bound_model().ainvoke(state["messages"])
    return {"messages": [response]}


def route_after_agent(state: MessagesState) -> str:
    """Go to ``tools`` when the last AI message requested tool calls."""
    last = state["messages"][-1]
    if isinstance(last, AIMessage) and last.tool_calls:
        return "tools"
    return END


builder = StateGraph(MessagesState)
builder.add_node("agent", agent)
builder.add_node("tools", ToolNode(TOOLS))
builder.add_edge(START, "agent")
builder.add_conditional_edges("agent", route_after_agent, ["tools", END])
builder.add_edge("tools", "agent")

graph = builder.compile(name="chat_agent")
