"""Per-cron policies (beyond the reference): how many of a cron's runs may be active at once,
and whether a failed run is retried. Optional fields of the create/PATCH body, kept in the
cron's ``payload``; the official SDKs cannot send unknown body fields, so the same object is
also read from ``metadata["x_gateway"]`` (the body's top-level fields win):

- ``max_concurrency``: an int >= 1: at most that many of the cron's runs pending or running at
  once (retries included). At the limit, ``on_max_concurrency`` says what a tick does:
  ``"skip"`` (default: the tick is recorded ``skipped`` and the next one stands) or ``"queue"``
  (the tick stays due and fires as soon as a run ends; ticks that pass meanwhile coalesce).
- ``retry``: ``{"max_attempts": 3, "initial_delay_s": 1, "multiplier": 2, "max_delay_s": 300,
  "on": ["error"]}``: a run the cron fired that ends with a status in ``on`` (``error``,
  ``interrupted``, ``timeout``) is created again from the same payload, up to ``max_attempts``
  runs per tick, after ``U(0, min(max_delay_s, initial_delay_s * multiplier^(n-1)))`` seconds
  (exponential backoff with full jitter). Absent: no retry, as the reference.

Limit: a retry waiting for its delay lives in the memory of the process that fired the tick;
if that process stops, the retry is not made (the failed run and its fire record stay).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

RETRY_STATUSES = ("error", "interrupted", "timeout")


class PolicyError(ValueError):
    """A policy field is wrong (422 naming it)."""


@dataclass(frozen=True)
class RetryPolicy:
    """The ``retry`` object (module docstring)."""

    max_attempts: int = 3
    initial_delay_s: float = 1.0
    multiplier: float = 2.0
    max_delay_s: float = 300.0
    on: tuple[str, ...] = ("error",)

    def delay_s(self, attempt: int) -> float:
        """Seconds before run ``attempt + 1`` (``attempt`` >= 1): full jitter."""
        cap = min(self.max_delay_s, self.initial_delay_s * self.multiplier ** (attempt - 1))
        return random.uniform(0, cap)


@dataclass(frozen=True)
class CronPolicy:
    """A cron's policies; the defaults are the reference's behaviour."""

    max_concurrency: int | None = None
    on_max_concurrency: str = "skip"
    retry: RetryPolicy | None = None


def _number(block: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = block.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise PolicyError(f"retry.{key}: must be a number from {low:g} to {high:g}")
    return float(value)


def policy_of(payload: dict[str, Any], metadata: dict[str, Any] | None = None) -> CronPolicy:
    """The policies of a cron body (top-level fields over ``metadata["x_gateway"]``).

    Raises:
        PolicyError: a field is wrong (its name is in the message).
    """
    nested = (metadata or {}).get("x_gateway")
    source = {**(nested if isinstance(nested, dict) else {}),
              **{k: payload[k] for k in ("max_concurrency", "on_max_concurrency", "retry")
                 if k in payload}}
    limit = source.get("max_concurrency")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                              or not 1 <= limit <= 10_000):
        raise PolicyError("max_concurrency: must be an integer from 1 to 10000")
    on_limit = source.get("on_max_concurrency", "skip")
    if on_limit not in ("skip", "queue"):
        raise PolicyError("on_max_concurrency: must be 'skip' or 'queue'")
    block = source.get("retry")
    retry = None
    if block is not None:
        if not isinstance(block, dict):
            raise PolicyError("retry: must be an object")
        on = block.get("on", ["error"])
        if not isinstance(on, list) or not on or any(s not in RETRY_STATUSES for s in on):
            raise PolicyError(f"retry.on: a non-empty list of {', '.join(RETRY_STATUSES)}")
        retry = RetryPolicy(
            max_attempts=int(_number(block, "max_attempts", 3, 1, 100)),
            initial_delay_s=_number(block, "initial_delay_s", 1.0, 0, 86400),
            multiplier=_number(block, "multiplier", 2.0, 1, 10),
            max_delay_s=_number(block, "max_delay_s", 300.0, 0, 86400),
            on=tuple(on))
    return CronPolicy(limit, str(on_limit), retry)
