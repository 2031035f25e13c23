"""The health rules on a fake clock: lateness by cron slots (daylight-saving days included) and by
period, running long, failed, new, and the trends, robust to one outlier. Pure: no store."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from runstore.errors import UsageError
from runstore.health.expectations import Expectation, shown_target
from runstore.health.states import decide
from runstore.health.trends import duration_trend, is_flaky

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
SET_LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)


def run(started: datetime, status: str = "completed", ms: int | None = 1000, n: int = 1) -> dict:
    return {"run_id": f"r{n}", "status": status, "started_at": started,
            "finished_at": started + timedelta(milliseconds=ms or 0), "duration_ms": ms,
            "exit_code": 0 if status == "completed" else 1, "error_summary": None,
            "host": "h"}  # fmt: skip


def hourly(**extra: object) -> Expectation:
    return Expectation("sync", schedule="0 * * * *", grace_s=600, created_at=SET_LONG_AGO,
                       **extra)  # type: ignore[arg-type]  # fmt: skip


def at(hour: int, minute: int = 0, second: int = 0, day: int = 2) -> datetime:
    return datetime(2026, 12, day, hour, minute, second, tzinfo=UTC)


# -- lateness --------------------------------------------------------------------------------------


def test_an_hourly_job_is_late_only_once_its_grace_has_passed():
    ran = [run(at(11, 0, 2)), run(at(10, 0, 1))]
    assert decide("sync", hourly(), ran, None, at(12, 5)).state == "ok"  # 12:00 within its grace
    late = decide("sync", hourly(), ran, None, at(12, 11))
    assert late.state == "late" and late.due_at == at(12)
    assert late.reason.startswith("expected to start at 2026-12-02 12:00 UTC, 11m")
    assert decide("sync", hourly(), [run(at(12, 3)), *ran], None, at(12, 40)).state == "ok"


def test_a_run_a_little_early_counts_for_its_slot():
    early = [run(at(11, 59, 30))]  # cron on a clock half a minute fast
    assert decide("sync", hourly(), early, None, at(12, 30)).state == "ok"
    too_early = [run(at(11, 58, 0))]
    assert decide("sync", hourly(), too_early, None, at(12, 30)).state == "late"


def test_a_missed_slot_is_late_even_while_the_next_is_within_its_grace():
    ran = [run(at(11, 0, 2))]  # 12:00 never ran; now 13:05, and 13:00 is within its grace
    late = decide("sync", hourly(), ran, None, at(13, 5))
    assert late.state == "late" and late.due_at == at(12)


def test_a_period_counts_from_the_last_start():
    exp = Expectation("backup", every_s=3600, grace_s=600, created_at=SET_LONG_AGO)
    ran = [run(at(10))]
    assert decide("backup", exp, ran, None, at(11, 9)).state == "ok"
    late = decide("backup", exp, ran, None, at(11, 11))
    assert late.state == "late" and late.due_at == at(11)


def test_a_job_is_new_until_its_first_start_is_due():
    exp = Expectation("nightly", schedule="0 3 * * *", grace_s=1800, created_at=at(10))
    new = decide("nightly", exp, [], None, at(12))
    assert new.state == "new" and "first expected at 2026-12-03 03:00 UTC" in new.reason
    late = decide("nightly", exp, [], None, at(3, 31, day=3))
    assert late.state == "late" and "never ran" in late.reason


def test_lateness_on_the_day_clocks_go_forward_follows_cron():
    # 02:30 does not exist in Berlin on 2026-03-29 (02:00 -> 03:00): cron runs the job at 03:00.
    exp = Expectation("dst", schedule="30 2 * * *", timezone="Europe/Berlin", grace_s=900,
                      created_at=SET_LONG_AGO)  # fmt: skip
    day_before = [run(datetime(2026, 3, 28, 2, 30, 1, tzinfo=BERLIN))]
    local = lambda h, m: datetime(2026, 3, 29, h, m, tzinfo=BERLIN)  # noqa: E731
    assert decide("dst", exp, day_before, None, local(3, 10)).state == "ok"  # 03:00 + 15m grace
    late = decide("dst", exp, day_before, None, local(3, 20))
    assert late.state == "late"
    assert late.due_at == local(3, 0).astimezone(UTC) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert "2026-03-29 03:00 Europe/Berlin" in late.reason
    ran_at_three = [run(local(3, 0).replace(second=4)), *day_before]
    assert decide("dst", exp, ran_at_three, None, local(9, 0)).state == "ok"


def test_the_hour_that_happens_twice_asks_for_one_run():
    # 2026-10-25 in Berlin: 03:00 CEST -> 02:00 CET, so 02:30 comes twice; cron runs once.
    exp = Expectation("dst", schedule="30 2 * * *", timezone="Europe/Berlin", grace_s=900,
                      created_at=SET_LONG_AGO)  # fmt: skip
    first = datetime(2026, 10, 25, 0, 30, 5, tzinfo=UTC)  # 02:30 CEST
    second_pass = datetime(2026, 10, 25, 1, 50, tzinfo=UTC)  # 02:50 CET, after the second 02:30
    assert decide("dst", exp, [run(first)], None, second_pass).state == "ok"
    assert decide("dst", exp, [run(first - timedelta(days=1))], None, second_pass).state == "late"


def test_a_schedule_in_its_time_zone():
    exp = Expectation("nightly", schedule="0 3 * * *", timezone="Europe/Berlin", grace_s=600,
                      created_at=SET_LONG_AGO)  # fmt: skip
    yesterday = [run(datetime(2026, 12, 1, 2, 0, 5, tzinfo=UTC))]  # 03:00 Berlin is 02:00 UTC
    assert decide("nightly", exp, yesterday, None, at(2, 5)).state == "ok"
    assert decide("nightly", exp, yesterday, None, at(2, 11)).state == "late"


# -- running long, failed, new, ok -----------------------------------------------------------------


def test_running_long_wins_over_everything():
    exp = hourly(max_duration_s=7200)
    started = at(9)
    judged = decide("sync", exp, [run(started, "running", None)], started, at(11, 30))
    assert judged.state == "running-long"
    assert judged.reason == "running for 2h30m, longer than 2h"
    assert decide("sync", exp, [run(at(11, 0, 2))], at(11), at(11, 30)).state == "ok"


def test_failed_is_the_last_finished_run_that_did_not_complete():
    exp = Expectation("etl", created_at=SET_LONG_AGO)  # no schedule: never late
    failed = run(at(10), "failed")
    failed["error_summary"] = "exit code 3: disk full"
    judged = decide("etl", exp, [run(at(11), "running", None), failed], at(11), at(11, 5))
    assert judged.state == "failed"
    assert judged.reason == "last run r1 failed: exit code 3: disk full"
    assert decide("etl", None, [], None, at(12)).state == "new"
    assert decide("etl", None, [run(at(10))], None, at(12)).state == "ok"


# -- trends ----------------------------------------------------------------------------------------


def _durations(recent: list[int], baseline: list[int]) -> list[int]:
    return recent + baseline  # newest first


def test_slower_and_faster_by_medians():
    baseline = [10_000 + 100 * (i % 5) for i in range(20)]
    slower = duration_trend(_durations([15_500, 15_300, 16_000, 15_800, 15_400], baseline))
    assert slower is not None and slower.kind == "slower" and str(slower) == "slower +52%"
    faster = duration_trend(_durations([1_000, 1_100, 900, 1_050, 980], baseline))
    assert faster is not None and str(faster) == "faster -90%"
    assert duration_trend(_durations([10_100] * 5, baseline)) is None  # steady


def test_one_outlier_does_not_make_a_trend():
    baseline = [10_000] * 20
    assert duration_trend(_durations([10_000, 90_000, 10_100, 9_900, 10_000], baseline)) is None
    assert duration_trend(_durations([10_000, 100, 10_100, 9_900, 10_000], baseline)) is None


def test_jitter_of_a_fast_job_and_too_few_runs_make_no_trend():
    assert duration_trend(_durations([30] * 5, [10] * 20)) is None  # 3x, but 20 ms apart
    assert duration_trend(_durations([30_000] * 5, [10_000] * 9)) is None  # too few before


def test_flaky_flips_between_success_and_failure():
    assert is_flaky([True, False, True, False, True, False, True, True, True, True])
    assert not is_flaky([False, False, False, True, True, True, True, True, True, True])
    assert not is_flaky([True, False, True, False, True, True, True, True, True, True])


def test_a_flaky_or_slower_job_is_a_problem_only_when_it_asks():
    statuses = ["completed", "failed", "completed", "failed", "completed", "failed", "completed"]
    ran = [run(at(10) - timedelta(hours=i), s, n=i) for i, s in enumerate(statuses)]
    quiet = decide("etl", Expectation("etl", created_at=SET_LONG_AGO), ran, None, at(11))
    assert quiet.state == "flaky" and not quiet.is_problem
    asks = Expectation("etl", created_at=SET_LONG_AGO, alert_trends=True)
    assert decide("etl", asks, ran, None, at(11)).is_problem


# -- expectations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"schedule": "0 3 * *"}, "a cron expression has five fields"),
        ({"schedule": "0 25 * * *"}, "Bad hour"),
        ({"schedule": "0 3 * * *", "every_s": 60}, "not both"),
        ({"timezone": "Europe/Berlin"}, "give a --schedule too"),
        ({"schedule": "0 3 * * *", "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"notify": ("ops@example.com",)}, "give an Apprise URL"),
        ({"notify": ("command:  ",)}, "give the command"),
        ({"job": "  "}, "a job name is"),
    ],
)
def test_bad_expectations_are_usage_errors(fields, said):
    with pytest.raises(UsageError, match=said):
        Expectation(**{"job": "j", **fields})  # type: ignore[arg-type]


def test_targets_are_shown_without_their_secrets():
    assert shown_target("slack://TokenA/TokenB/TokenC") == "slack://…"
    assert shown_target("tgram://123456:ABC-def/-100200") == "tgram://…"
    assert shown_target("ntfy://ntfy.example.com/ops") == "ntfy://ntfy.example.com/…"
    assert shown_target("mailto://ops:hunter2@example.com") == "mailto://example.com"
    assert shown_target("json://127.0.0.1:8080/hook?token=s3") == "json://127.0.0.1:8080/…"
    assert shown_target("command:/usr/local/bin/page --key s3") == "command:/usr/local/bin/page …"
