"""runtime/crons/schedule.py: the reference's croniter grammar and next dates (the examples of
crons-webhooks.md 6.1, measured on the reference), our daylight-saving choice, ``@every`` and
``@at``, and the errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from runtime.crons.schedule import NoNextDate, ScheduleError, iso, parse, parse_end_time

pytestmark = pytest.mark.timeout(10)

BASE = datetime(2026, 11, 30, 14, 18, 55, tzinfo=UTC)  # a Monday, as in the reference probe


def nxt(text: str, base: datetime = BASE, tz: str | None = None, **kw: datetime) -> str | None:
    return iso(parse(text).next_after(base, tz, **kw))


@pytest.mark.parametrize(("schedule", "tz", "expected"), [
    ("0 9 * * 1-5", "Europe/Berlin", "2026-12-01T08:00:00+00:00"),
    ("30 2 * * *", "America/New_York", "2026-12-01T07:30:00+00:00"),
    ("@hourly", None, "2026-11-30T15:00:00+00:00"),
    ("0 0 L * *", None, "2026-12-31T00:00:00+00:00"),
    ("0 0 * * * 30", None, "2026-12-01T00:00:30+00:00"),  # six fields: seconds LAST
    ("0 0 1 1 * 0 2030", None, "2030-01-01T00:00:00+00:00"),  # seven: a year
    ("0 0 1 * 1", None, "2026-12-01T00:00:00+00:00"),  # day of month OR day of week
])
def test_next_dates_match_the_reference(schedule: str, tz: str | None, expected: str) -> None:
    assert nxt(schedule, tz=tz) == expected


def test_a_fixed_hour_job_fires_once_on_the_autumn_change() -> None:
    """America/New_York falls back on 2027-11-07: 01:30 happens twice. The reference
    (croniter) fires a daily 01:30 job at both; we fire the first only."""
    ny = "America/New_York"
    first = nxt("30 1 * * *", datetime(2027, 11, 7, 4, 0, tzinfo=UTC), ny)
    assert first == "2027-11-07T05:30:00+00:00"  # 01:30 EDT
    after = nxt("30 1 * * *", datetime(2027, 11, 7, 5, 30, 1, tzinfo=UTC), ny)
    assert after == "2027-11-08T06:30:00+00:00"  # the next day, not 01:30 EST
    # a wildcard hour keeps firing in both 01:00 hours (real time moves on)
    assert nxt("0 * * * *", datetime(2027, 11, 7, 5, 0, 1, tzinfo=UTC), ny) == \
        "2027-11-07T06:00:00+00:00"
    # spring forward: 02:30 does not exist; the tick moves to 03:00 local, as croniter does
    assert nxt("30 2 * * *", datetime(2027, 3, 13, 12, tzinfo=UTC), ny) == \
        "2027-03-14T07:00:00+00:00"


def test_every_and_at() -> None:
    anchor = datetime(2026, 11, 30, 14, 18, 0, tzinfo=UTC)
    assert nxt("@every 90s", anchor=anchor) == "2026-11-30T14:19:30+00:00"
    assert nxt("@every 1h30m", anchor=anchor) == "2026-11-30T15:48:00+00:00"
    assert nxt("@every 2s", datetime(2026, 11, 30, 14, 18, 4, tzinfo=UTC), anchor=anchor) == \
        "2026-11-30T14:18:06+00:00"  # on the anchor's grid, strictly after the base
    assert nxt("@at 2027-01-01T09:00:00", tz="Europe/Paris") == "2027-01-01T08:00:00+00:00"
    assert nxt("@at 2027-01-01T09:00:00Z") == "2027-01-01T09:00:00+00:00"
    assert nxt("@at 2020-01-01T09:00:00Z") is None  # past: no tick
    assert parse("@at 2027-01-01T09:00:00Z").one_off and not parse("@every 5m").one_off


@pytest.mark.parametrize("schedule", [
    "61 * * * *", "", "* * *", "H * * * *", "@reboot", "5L * * * *", "@every", "@every 0s",
    "@every 5x", "@at tomorrow", 5, None,
])
def test_unreadable_schedules_are_422(schedule: object) -> None:
    with pytest.raises(ScheduleError) as err:
        parse(schedule)
    assert err.value.field == "schedule"


def test_a_schedule_that_never_fires_is_400_and_bad_zones_and_end_times_are_422() -> None:
    with pytest.raises(NoNextDate):
        nxt("0 0 30 2 *")
    with pytest.raises(ScheduleError) as err:
        nxt("* * * * *", tz="Mars/Olympus")
    assert err.value.field == "timezone" and "Mars/Olympus" in str(err.value)
    with pytest.raises(ScheduleError) as err:
        parse_end_time("tomorrow")
    assert err.value.field == "end_time"
    assert iso(parse_end_time("2030-01-01T00:00:00Z")) == "2030-01-01T00:00:00+00:00"
    assert iso(parse_end_time("2030-01-01T02:00:00+02:00")) == "2030-01-01T00:00:00+00:00"
