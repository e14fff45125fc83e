"""AuthFilter: the filter an authorization handler returns, in the one form the stores apply.

An ``@auth.on...`` handler of ``langgraph_sdk.Auth`` may return a filter over a resource's
``metadata`` (threads, assistants, crons) or a store item's ``value`` (store search). The
LangGraph Platform forms are accepted:

- ``{"owner": "alice"}`` and ``{"owner": {"$eq": "alice"}}``: the key holds that value;
- ``{"tags": {"$contains": "x"}}``: the key holds a list containing ``x``;
  ``{"tags": {"$contains": ["x", "y"]}}``: a list containing both;
- ``{"$or": [f1, f2, ...]}`` and ``{"$and": [f1, f2, ...]}`` (two or more filters each, nested
  at most two levels, as the reference); several keys in one filter are ANDed.

Every form is normalised to a disjunction of JSON-containment documents
(``alternatives``): a resource is visible when its metadata contains at least one of them,
with Postgres ``@>`` semantics (``runtime.store.filters.contains``; scalars compare by JSON
type, so ``1`` never matches ``true``). A list or object value given as ``$eq``/plain value
therefore matches by containment, as the thread search's own ``metadata`` filter does.

Unlike the reference, an unknown operator (``$ne``, ``$in``, ...) is refused
(``AuthFilterError``) instead of silently matching everything: a filter that cannot be
enforced fails closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime.store.filters import contains

MAX_ALTERNATIVES = 64
"""Most alternatives a normalised filter may have (``$and`` of ``$or`` multiplies them)."""


class AuthFilterError(Exception):
    """The handler returned a filter the gateway cannot enforce (an operator it does not
    know, a malformed ``$or``/``$and``, too deep or too wide). The request is refused with a
    500 that names the problem: nothing is shown unfiltered."""


@dataclass(frozen=True)
class AuthFilter:
    """A normalised authorization filter (module docstring).

    Attributes:
        alternatives: containment documents, ORed; ``({},)`` matches everything, ``()``
            nothing.
    """

    alternatives: tuple[dict[str, Any], ...]

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> AuthFilter:
        """Normalise a handler's filter dict.

        Raises:
            AuthFilterError: an unsupported operator or shape (module docstring).
        """
        if not isinstance(raw, dict):
            raise AuthFilterError(f"an auth filter must be a dict, got {type(raw).__name__}")
        alternatives = _normalise(raw, depth=0)
        if len(alternatives) > MAX_ALTERNATIVES:
            raise AuthFilterError(f"auth filter expands to {len(alternatives)} alternatives "
                                  f"(at most {MAX_ALTERNATIVES})")
        return cls(tuple(alternatives))

    def matches(self, document: dict[str, Any] | None) -> bool:
        """True if ``document`` (a resource's metadata) satisfies the filter."""
        doc = document or {}
        return any(contains(doc, alt) for alt in self.alternatives)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any] | None:
    """One containment document requiring both ``a`` and ``b``, or None when no document
    can satisfy both (one key required to hold two different scalars)."""
    out = dict(a)
    for key, value in b.items():
        if key not in out or out[key] == value:
            out[key] = value
            continue
        mine = out[key]
        if isinstance(mine, list) and isinstance(value, list):
            out[key] = [*mine, *value]
        elif isinstance(mine, dict) and isinstance(value, dict):
            inner = _merge(mine, value)
            if inner is None:
                return None
            out[key] = inner
        else:
            return None
    return out


def _normalise(raw: dict[str, Any], depth: int) -> list[dict[str, Any]]:
    """``raw`` as a list of ORed containment documents."""
    if depth > 2:
        raise AuthFilterError("auth filter nests $or/$and more than two levels")
    groups: list[list[dict[str, Any]]] = []
    plain: dict[str, Any] | None = {}
    for key, value in raw.items():
        if key in ("$or", "$and"):
            if not isinstance(value, list) or len(value) < 2 or not all(
                    isinstance(v, dict) for v in value):
                raise AuthFilterError(f"{key} needs a list of at least two filters")
            parts = [_normalise(v, depth + 1) for v in value]
            if key == "$or":
                groups.append([alt for part in parts for alt in part])
            else:
                groups.extend(parts)
            continue
        if key.startswith("$"):
            raise AuthFilterError(f"unsupported filter operator {key!r}")
        if plain is not None:
            plain = _merge(plain, {key: _condition(key, value)})
    if plain is None:
        return []
    alternatives = [plain]
    for group in groups:
        merged = (_merge(a, b) for a in alternatives for b in group)
        alternatives = [m for m in merged if m is not None]
        if len(alternatives) > MAX_ALTERNATIVES:
            raise AuthFilterError("auth filter has too many alternatives")
    return alternatives


def _condition(key: str, value: Any) -> Any:
    """The containment value for one key's condition."""
    if not isinstance(value, dict) or not any(k.startswith("$") for k in value):
        return value
    if len(value) != 1:
        raise AuthFilterError(f"filter on {key!r}: one operator per key, got {sorted(value)}")
    (op, operand), = value.items()
    if op == "$eq":
        return operand
    if op == "$contains":
        return list(operand) if isinstance(operand, list) else [operand]
    raise AuthFilterError(f"unsupported filter operator {op!r} on {key!r} "
                          "(supported: $eq, $contains, $or, $and)")
