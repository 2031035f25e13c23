"""Reading the times and durations people type, and showing durations the way people read them."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from runstore.errors import UsageError
from runstore.humanize import (
    DURATION_FORMS,
    WHEN_FORMS,
    format_duration,
    humane_age,
    humane_duration,
    local_time,
    parse_duration,
    parse_when,
)

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def local_tz(monkeypatch: pytest.MonkeyPatch):
    """Switch the process's local time zone for one test."""

    def use(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield use
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("5s", 5),
        ("2m", 120),
        ("1h", 3600),
        ("1d", 86400),
        ("2w", 1209600),
        ("1h30m", 5400),
        ("1m5s", 65),
        ("1.5h", 5400),
        (" 10 s ", 10),
        ("10S", 10),
        ("0s", 0),
        ("0", 0),  # zero is zero in any unit
        ("0.0", 0),
    ],
)
def test_parse_duration_accepts_units_and_combinations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["3", "90", " 1.5 ", "007"])
def test_a_number_without_a_unit_is_refused_with_what_it_could_mean(text):
    with pytest.raises(UsageError) as caught:
        parse_duration(text, "--older-than")
    number = text.strip()
    assert str(caught.value) == (
        f"--older-than: {number!r} has no unit: say {number}s, {number}m, {number}h or {number}d"
    )
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("text", ["", "  ", "5x", "five", "-5s", "5s ago", "1h30", "s", "1e3s"])
def test_parse_duration_refuses_other_text_naming_the_accepted_forms(text):
    with pytest.raises(UsageError) as caught:
        parse_duration(text, "--min-duration")
    message = str(caught.value)
    assert message.startswith("--min-duration:")
    assert DURATION_FORMS in message
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("text", "ago"),
    [
        ("30m", timedelta(minutes=30)),
        ("12h", timedelta(hours=12)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("90s", timedelta(seconds=90)),
        ("7D", timedelta(days=7)),
    ],
)
def test_parse_when_relative_ages_count_back_from_now(text, ago):
    assert parse_when(text, now=NOW) == NOW - ago


def test_parse_when_now_is_now():
    assert parse_when("now", now=NOW) == NOW


def test_parse_when_iso_forms_with_an_offset_are_exact():
    assert parse_when("2026-11-28T06:00Z", now=NOW) == datetime(
        2026, 11, 28, 6, tzinfo=timezone.utc
    )
    assert parse_when("2026-11-28T06:00:00+02:00", now=NOW) == datetime(
        2026, 11, 28, 4, tzinfo=timezone.utc
    )


def test_parse_when_dates_and_times_without_offset_are_local(local_tz):
    local_tz("America/New_York")  # UTC-5 in November
    assert parse_when("2026-11-28", now=NOW) == datetime(2026, 11, 28, 5, tzinfo=timezone.utc)
    assert parse_when("2026-11-28T06:00", now=NOW) == datetime(
        2026, 11, 28, 11, tzinfo=timezone.utc
    )
    assert parse_when("2026-11-28 06:00:30", now=NOW) == datetime(
        2026, 11, 28, 11, 0, 30, tzinfo=timezone.utc
    )


def test_parse_when_returns_aware_utc(local_tz):
    local_tz("Asia/Tokyo")
    for text in ("7d", "today", "yesterday", "2026-11-01", "2026-11-01T10:00+01:00"):
        value = parse_when(text, now=NOW)
        assert value.tzinfo is not None and value.utcoffset() == timedelta(0), text


def test_today_and_yesterday_are_local_midnights(local_tz):
    local_tz("Asia/Tokyo")  # UTC+9: at 12:00 UTC it is already 21:00 on the 28th
    assert parse_when("today", now=NOW) == datetime(2026, 11, 27, 15, tzinfo=timezone.utc)
    assert parse_when("yesterday", now=NOW) == datetime(2026, 11, 26, 15, tzinfo=timezone.utc)
    late = datetime(2026, 11, 28, 23, 30, tzinfo=timezone.utc)  # 08:30 on the 29th in Tokyo
    assert parse_when("today", now=late) == datetime(2026, 11, 28, 15, tzinfo=timezone.utc)


def test_today_uses_the_offset_of_midnight_on_a_daylight_saving_day(local_tz):
    local_tz("Europe/Berlin")
    # 29 March 2026: clocks go from +01:00 to +02:00 at 01:00 UTC; midnight was still +01:00.
    noon = datetime(2026, 3, 29, 12, tzinfo=timezone.utc)
    assert parse_when("today", now=noon) == datetime(2026, 3, 28, 23, tzinfo=timezone.utc)
    # 25 October 2026: back from +02:00 to +01:00; midnight was still +02:00.
    noon = datetime(2026, 10, 25, 12, tzinfo=timezone.utc)
    assert parse_when("today", now=noon) == datetime(2026, 10, 24, 22, tzinfo=timezone.utc)
    assert parse_when("yesterday", now=noon) == datetime(2026, 10, 23, 22, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "text", ["", "last week", "7", "7 days", "-7d", "2026-13-01", "2026/11/28", "tomorrow"]
)
def test_parse_when_refuses_other_text_naming_the_accepted_forms(text):
    with pytest.raises(UsageError) as caught:
        parse_when(text, "--since", now=NOW)
    message = str(caught.value)
    assert message.startswith("--since:")
    assert WHEN_FORMS in message
    for form in ("30m", "12h", "7d", "2w", "today", "yesterday", "ISO"):
        assert form in message
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("ms", "shown"),
    [
        (None, ""),
        (0, "0ms"),
        (814, "814ms"),
        (999, "999ms"),
        (1000, "1.0s"),
        (12_345, "12.3s"),
        (59_940, "59.9s"),
        (59_960, "1m00s"),  # not "60.0s"
        (60_000, "1m00s"),
        (245_000, "4m05s"),
        (3_599_999, "59m59s"),
        (3_600_000, "1h00m"),
        (3_720_000, "1h02m"),
        (86_400_000, "1d00h"),
        (273_600_000, "3d04h"),
    ],
)
def test_humane_duration(ms, shown):
    assert humane_duration(ms) == shown


def test_humane_age_counts_to_now_and_never_goes_negative():
    assert humane_age(NOW - timedelta(seconds=90), now=NOW) == "1m30s"
    assert humane_age(NOW + timedelta(seconds=5), now=NOW) == "0ms"


def test_local_time_shows_the_local_wall_clock(local_tz):
    local_tz("Europe/Berlin")
    assert local_time(NOW) == "2026-11-28 13:00:00"
    assert local_time(None) == ""
