"""JSON bytes for graph payloads: messages, pydantic models, dataclasses, interrupts, sets.

Every payload a run produces is encoded here exactly once (the bridge stores the bytes and
every subscriber gets the same bytes). Output is compact JSON on one line (orjson), as the
reference server sends it.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from langchain_core.messages import BaseMessage
from langgraph.types import Interrupt, Send

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


_PLAIN_MESSAGE_TYPES: dict[type, bool] = {}


def _is_plain_message_type(cls: type) -> bool:
    """True if ``model_dump()`` of instances of ``cls`` is exactly their ``__dict__`` plus their
    extra fields: a LangChain message class with no excluded or computed field and no custom
    serializer (checked once per class)."""
    plain = _PLAIN_MESSAGE_TYPES.get(cls)
    if plain is None:
        decorators = getattr(cls, "__pydantic_decorators__", None)
        plain = (issubclass(cls, BaseMessage) and decorators is not None
                 and not decorators.field_serializers and not decorators.model_serializers
                 and not cls.model_computed_fields
                 and not any(f.exclude for f in cls.model_fields.values()))
        _PLAIN_MESSAGE_TYPES[cls] = plain
    return plain


def _message_dict(obj: BaseMessage) -> dict[str, Any]:
    """``obj.model_dump()`` of a plain message (``_is_plain_message_type``), 15 times faster:
    the field values as they are (orjson encodes them, calling back for any nested model)."""
    out = dict(obj.__dict__)
    extra = obj.__pydantic_extra__
    if extra:
        out.update(extra)
    return out


def _unchanged(obj: BaseMessage, converted: dict[str, Any]) -> bool:
    """True if ``converted`` (``_message_dict(obj)`` made earlier) still holds ``obj``'s very
    field objects."""
    fields = obj.__dict__
    extra = obj.__pydantic_extra__ or {}
    if len(converted) != len(fields) + len(extra):
        return False
    return all(converted.get(k, converted) is v for k, v in fields.items()) and all(
        converted.get(k, converted) is v for k, v in extra.items())


def _default(obj: Any) -> Any:
    """Fallback for types orjson does not know; raises TypeError for the unencodable."""
    if _is_plain_message_type(type(obj)):  # the common case: a state's messages
        return _message_dict(obj)
    if isinstance(obj, Interrupt):
        return {"value": obj.value, "id": obj.id}
    if isinstance(obj, Send):
        return {"node": obj.node, "arg": obj.arg}
    model_dump = getattr(obj, "model_dump", None)
    if callable(model_dump):  # pydantic v2 models, LangChain messages
        return model_dump()
    to_json = getattr(obj, "to_json", None)
    if callable(to_json):  # LangChain Serializable
        return to_json()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple) and hasattr(obj, "_asdict"):
        return obj._asdict()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, (uuid.UUID, datetime.timedelta)):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    if isinstance(obj, BaseException):
        return {"error": type(obj).__name__, "message": str(obj)}
    raise TypeError(f"Type is not JSON serializable: {type(obj).__name__}")


def _lenient(obj: Any) -> Any:
    """Like ``_default`` but never fails: unknown objects become their ``repr``."""
    try:
        return _default(obj)
    except TypeError:
        return repr(obj)


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes of a graph payload. Unencodable leaves become their ``repr``.

    The result is a right-sized copy: orjson keeps its whole output buffer allocated (at
    least 4 KB, and several times the output for long strings), and run logs keep every
    event's bytes for ``stream_retention_s``. Measured on the benchmark's trivial graph: 25 KB
    held per finished run before, 5 KB after (the rest is the run's handle and log); the copy
    costs well under a microsecond for a small event.
    """
    return memoryview(orjson.dumps(obj, default=_lenient, option=_OPTIONS)).tobytes()


class MemoDumps:
    """``dumps`` for the events of one run: each LangChain message is converted once and its
    dict reused while the run lasts.

    A ``values`` event holds the whole state, and the state's messages are the same objects
    from one step to the next, so without the memo a thread of 800 messages converted 800
    messages per ``values`` event. The memo keeps each object alive (its key is the object's
    ``id``) until the run ends; build one per run. A hit is used only if every field of the
    message is still the very object it was (a node that reassigns a field, ``m.content = ...``,
    gets a fresh conversion; a list changed in place is the same object in the memo's dict, so
    the encoding sees the change).
    """

    __slots__ = ("_memo",)

    def __init__(self) -> None:
        self._memo: dict[int, tuple[Any, dict[str, Any]]] = {}

    def _default(self, obj: Any) -> Any:
        if not _is_plain_message_type(type(obj)):
            return _lenient(obj)
        hit = self._memo.get(id(obj))
        if hit is not None and hit[0] is obj and _unchanged(obj, hit[1]):
            return hit[1]
        value = _message_dict(obj)
        self._memo[id(obj)] = (obj, value)
        return value

    def __call__(self, obj: Any) -> bytes:
        """Compact JSON bytes of ``obj``, as ``dumps``."""
        return memoryview(orjson.dumps(obj, default=self._default, option=_OPTIONS)).tobytes()


def loads(data: bytes | str) -> Any:
    """Parse JSON bytes or text."""
    return orjson.loads(data)


def to_jsonable(obj: Any) -> Any:
    """A plain JSON value (dicts, lists, scalars) equal to ``loads(dumps(obj))``."""
    return orjson.loads(dumps(obj))
