"""Cron schedules: the reference's croniter grammar, plus ``@every`` and ``@at``.

Grammar (``POST /runs/crons`` ``schedule``):

- croniter's, as the reference (langgraph-api uses croniter): 5 fields; 6 fields with SECONDS
  LAST (``* * * * * */15`` = every 15 s); 7 fields with a year; the macros ``@yearly``
  ``@annually`` ``@monthly`` ``@weekly`` ``@daily`` ``@midnight`` ``@hourly``; ``L``, ``W``,
  ``#`` and names. Day of month and day of week are ORed (Vixie cron).
- ``@every <duration>`` (beyond the reference): an interval, ``90s``, ``5m``, ``1h30m``, ``2d``
  (units ``d h m s``, at least 1 s). Ticks are ``anchor + k * interval`` (the anchor is the
  cron's creation time), so a restart does not shift them; the time zone plays no part.
- ``@at <ISO-8601 time>`` (beyond the reference): one fire at that instant (a time without an
  offset is read in the cron's ``timezone``); after it the cron disables itself and its
  ``next_run_date`` becomes null.

Time zones: ticks are computed in the cron's IANA ``timezone`` (null = UTC) and stored in UTC.

Daylight saving (our choice, tested): a job at a FIXED hour fires once on the autumn change.
croniter (and so the reference) fires ``30 1 * * *`` in America/New_York twice on fall-back
day (01:30 EDT and 01:30 EST); we skip a tick whose local wall-clock time is not after the
previous tick's (the clock went back), unless the hour field is a wildcard (``0 * * * *`` still
fires in both 01:00 hours, as Debian cron does). At the spring change a tick inside the missing
hour moves to 03:00 local, as croniter does.

Errors: ``ScheduleError`` (a 422 naming the field) for a schedule or time zone that cannot be
read; ``NoNextDate`` (a 400) for a valid expression that never fires again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter

_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_MAX_SEARCH_S = 50 * 366 * 86400  # croniter gives up after about 50 years too


class ScheduleError(ValueError):
    """The schedule or time zone cannot be read (422, ``field`` named)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class NoNextDate(ValueError):
    """A valid schedule that never fires (``0 0 30 2 *``): 400 as the reference."""


def zone(name: str | None) -> ZoneInfo:
    """The IANA zone ``name`` (None: UTC). Raises ScheduleError."""
    if name is None:
        return ZoneInfo("UTC")
    try:
        if not name or name.startswith(("/", ".")) or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            "timezone", f"Invalid timezone: '{name}'. Use IANA timezone format "
                        "(e.g. 'America/New_York').") from None


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule. ``kind`` is ``cron``, ``every`` or ``at``."""

    text: str
    kind: str
    interval: timedelta | None = None
    at: datetime | None = None

    @property
    def one_off(self) -> bool:
        """True for ``@at``: the cron disables itself after its fire."""
        return self.kind == "at"

    def next_after(self, base: datetime, tz: str | None, *, anchor: datetime | None = None,
                   ) -> datetime | None:
        """The first tick strictly after ``base`` (aware), in UTC; None if there is none
        (an ``@at`` already past).

        Args:
            tz: the cron's time zone (cron expressions and an ``@at`` without offset).
            anchor: the origin of ``@every`` ticks (default ``base``).

        Raises:
            NoNextDate: a cron expression with no tick in the next 50 years.
        """
        if self.kind == "every":
            assert self.interval is not None
            origin = anchor or base
            if base < origin:
                return origin.astimezone(UTC)
            steps = (base - origin) // self.interval + 1
            return (origin + steps * self.interval).astimezone(UTC)
        if self.kind == "at":
            assert self.at is not None
            when = self.at if self.at.tzinfo else self.at.replace(tzinfo=zone(tz))
            return when.astimezone(UTC) if when > base else None
        local = base.astimezone(zone(tz))
        fixed_hour = not _hour_field(self.text).startswith("*")
        try:
            it = croniter(self.text, local)
            candidate: datetime = it.get_next(datetime)
            # autumn change: a fixed-hour tick whose wall clock is not after the previous one
            # (base's) is the repeat of one that already fired
            while fixed_hour and candidate.replace(tzinfo=None) <= local.replace(tzinfo=None) \
                    and candidate.utcoffset() != local.utcoffset():
                candidate = it.get_next(datetime)
        except (CroniterBadDateError, CroniterBadCronError, CroniterError) as exc:
            raise NoNextDate("failed to find next date") from exc
        if (candidate - local).total_seconds() > _MAX_SEARCH_S:
            raise NoNextDate("failed to find next date")
        return candidate.astimezone(UTC)


def _hour_field(text: str) -> str:
    if text.startswith("@"):
        return "*" if text == "@hourly" else "0"
    fields = text.split()
    return fields[1] if len(fields) >= 2 else "*"


def parse(text: object) -> Schedule:
    """Parse a ``schedule`` value. Raises ScheduleError (field ``schedule``)."""
    if not isinstance(text, str):
        raise ScheduleError("schedule", "schedule: must be a string")
    value = text.strip()
    if value.startswith("@every"):
        spec = value[len("@every"):].strip().replace(" ", "")
        match = _DURATION.match(spec)
        if not spec or match is None:
            raise _bad(text, "@every needs a duration such as 90s, 5m or 1h30m")
        d, h, m, s = (int(x or 0) for x in match.groups())
        interval = timedelta(days=d, hours=h, minutes=m, seconds=s)
        if interval < timedelta(seconds=1):
            raise _bad(text, "@every needs at least 1s")
        if interval > timedelta(days=3660):
            raise _bad(text, "@every allows at most 3660d")
        return Schedule(value, "every", interval=interval)
    if value.startswith("@at"):
        spec = value[len("@at"):].strip()
        try:
            at = datetime.fromisoformat(spec.replace("Z", "+00:00"))
        except ValueError:
            raise _bad(text, "@at needs an ISO-8601 time such as 2027-01-01T09:00:00Z") from None
        return Schedule(value, "at", at=at)
    if value.startswith("@") and value not in _MACROS:
        raise _bad(text, "unknown macro")
    try:
        if not value or not croniter.is_valid(value):  # ``H`` (needs a hash id) is invalid
            raise _bad(text, "Invalid cron schedule")
    except (CroniterError, ValueError, TypeError):
        raise _bad(text, "Invalid cron schedule") from None
    return Schedule(value, "cron")


def _bad(text: str, reason: str) -> ScheduleError:
    return ScheduleError(
        "schedule",
        f"Invalid cron schedule: '{text}'. Reason: {reason}. Ensure the schedule uses the "
        "standard cron format (minute hour day_of_month month day_of_week). Example: "
        "'*/5 * * * *' for every 5 minutes; or '@every 90s', or '@at 2027-01-01T09:00:00Z'.")


def parse_end_time(value: object) -> datetime | None:
    """An ``end_time`` (ISO-8601, an offset or ``Z``; without one: UTC), aware; None stays
    None. Raises ScheduleError (field ``end_time``): the reference stores any string
    (``"tomorrow"`` included) and its scheduler then crashes on it."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ScheduleError("end_time", "end_time: must be an ISO-8601 date-time string")
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ScheduleError("end_time", f"end_time: '{value}' is not an ISO-8601 date-time "
                                        "(e.g. 2027-01-01T00:00:00Z)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def iso(when: datetime | None) -> str | None:
    """``when`` as the API prints it: UTC, ``+00:00``, microseconds only when non-zero."""
    return None if when is None else when.astimezone(UTC).isoformat()


def stored(when: datetime | None) -> str | None:
    """``when`` as stored: UTC with microseconds always, so text order is time order."""
    return None if when is None else when.astimezone(UTC).isoformat(timespec="microseconds")


def from_stored(text: str | None) -> datetime | None:
    """The aware datetime of a stored (or API) timestamp."""
    return None if text is None else datetime.fromisoformat(text)
