"""``runstore job ...``: what is expected of each job: its schedule, grace, max duration and alert
targets (``health.expectations``), set one by one or from a jobs.toml kept in git."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from runstore.cli._app import DbOption, app, fail
from runstore.cli.output import Column, JsonObjectOption, JsonOption, print_json

if TYPE_CHECKING:
    from runstore.health.expectations import Expectation

job_app = typer.Typer(
    help="What is expected of each job: schedule, grace, max duration, alert targets.",
    no_args_is_help=True,
)
app.add_typer(job_app, name="job")

NameArgument = Annotated[str, typer.Argument(help="The job's name, as its runs are filed under.")]
JOB_COLUMNS = [
    Column("job", "JOB", "id"),
    Column("schedule", "SCHEDULE"),
    Column("grace", "GRACE", "id", drop=3),
    Column("max_duration", "MAX", "id", drop=2),
    Column("notify", "ALERTS", "count", drop=1),
    Column("state", "STATE", "status"),
]


@job_app.command("set")
def job_set(
    name: NameArgument,
    schedule: Annotated[
        str | None,
        typer.Option("--schedule", metavar="CRON", help="When it starts: '0 3 * * *'."),
    ] = None,
    tz: Annotated[
        str | None,
        typer.Option("--tz", metavar="ZONE", help="The schedule's time zone. Default: UTC."),
    ] = None,
    every: Annotated[
        str | None,
        typer.Option("--every", metavar="DURATION", help="Or: it runs at least this often."),
    ] = None,
    grace: Annotated[
        str | None,
        typer.Option("--grace", metavar="DURATION", help="How late it may start: 30m."),
    ] = None,
    max_duration: Annotated[
        str | None,
        typer.Option("--max-duration", help="How long a run may take (0: no limit)."),
    ] = None,
    notify: Annotated[
        list[str] | None,
        typer.Option(
            "--notify",
            metavar="TARGET",
            help="Whom to tell of a change of state: an Apprise URL, or command:CMD "
            "(repeatable; replaces the list).",
        ),
    ] = None,
    no_notify: Annotated[bool, typer.Option("--no-notify", help="Tell no one.")] = False,
    alert_trends: Annotated[
        bool | None,
        typer.Option(
            "--alert-trends/--no-alert-trends",
            help="Alert when it turns slower, faster or flaky too.",
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Set what is expected of a job (only the options given change).

    Examples: `runstore job set nightly-backup --schedule '0 3 * * *' --tz Europe/Berlin
    --grace 30m --max-duration 2h --notify ntfy://ops-alerts`, `runstore job set sync --every 1h`
    """
    from dataclasses import replace

    from runstore.health.expectations import Expectation, load, save
    from runstore.humanize import parse_duration
    from runstore.store.store import Store

    def seconds(text: str | None, option: str) -> int | None:
        return None if text is None else round(parse_duration(text, option))

    if schedule is not None and every is not None:
        fail("give --schedule or --every, not both", 2)
    changes: dict[str, Any] = {}
    if schedule is not None:
        changes.update(schedule=schedule, every_s=None)
    if tz is not None:
        changes["timezone"] = tz
    if every is not None:
        changes.update(every_s=seconds(every, "--every") or None, schedule=None, timezone=None)
    if grace is not None:
        changes["grace_s"] = seconds(grace, "--grace")
    if max_duration is not None:
        changes["max_duration_s"] = seconds(max_duration, "--max-duration") or None
    if notify or no_notify:
        changes["notify"] = () if no_notify else tuple(notify or ())
    if alert_trends is not None:
        changes["alert_trends"] = alert_trends
    store = Store.open(db)
    current = load(store, name)
    wanted = replace(current, **changes) if current is not None else Expectation(name, **changes)
    said = save(store, wanted)
    print(f"{name}: {_said(said)}; {_summary(wanted)}")


def _said(outcome: str) -> str:
    return {"new": "expectations set", "changed": "expectations changed",
            "unchanged": "expectations unchanged"}[outcome]  # fmt: skip


def _summary(exp: Expectation) -> str:
    from runstore.health.expectations import shown_target
    from runstore.health.schedule import describe
    from runstore.humanize import format_duration

    parts = [describe(exp)]
    if exp.grace_s:
        parts.append(f"grace {format_duration(exp.grace_s)}")
    if exp.max_duration_s:
        parts.append(f"at most {format_duration(exp.max_duration_s)}")
    targets = ", ".join(shown_target(t) for t in exp.notify)
    parts.append(f"alerts to {targets}" if targets else "no alerts")
    if exp.alert_trends:
        parts.append("trends alerted")
    return ", ".join(parts)


@job_app.command("list")
def job_list(as_json: JsonOption = False, db: DbOption = None) -> None:
    """List the jobs that have expectations, with the state each was last judged in."""
    import sys

    from runstore.cli.output import Format, choose_format, emit
    from runstore.health.expectations import load_all
    from runstore.health.schedule import describe
    from runstore.humanize import format_duration
    from runstore.store.store import Store

    fmt = choose_format(as_json, False, False)
    rows = [
        {
            "job": e.job,
            "schedule": describe(e),
            "grace": format_duration(e.grace_s) if e.grace_s else "",
            "max_duration": format_duration(e.max_duration_s) if e.max_duration_s else "",
            "notify": len(e.notify),
            "state": e.state or "",
        }
        for e in load_all(Store.open(db, mode="read"))
    ]
    if not rows and fmt is Format.TABLE:
        print("no job has expectations yet: runstore job set NAME --schedule ...", file=sys.stderr)
        return
    emit(rows, JOB_COLUMNS, fmt)


@job_app.command("show")
def job_show(name: NameArgument, as_json: JsonObjectOption = False, db: DbOption = None) -> None:
    """Show a job's expectations, its state now, and the alerts sent (and whether they got
    through)."""
    from runstore.cli.output import Format, choose_format, emit, emit_record
    from runstore.health.alerts import recent_alerts
    from runstore.health.expectations import load, shown_target
    from runstore.health.schedule import describe
    from runstore.health.states import judge
    from runstore.humanize import format_duration
    from runstore.store.store import Store

    store = Store.open(db, mode="read")
    exp = load(store, name)
    if exp is None:
        fail(f"job {name!r} has no expectations (runstore job set {name} ...)")
    judged = judge(store, name, exp)
    sent = recent_alerts(store, name)
    record = {
        "job": name,
        "schedule": describe(exp),
        "grace": format_duration(exp.grace_s),
        "max_duration": format_duration(exp.max_duration_s) if exp.max_duration_s else None,
        "notify": [shown_target(t) for t in exp.notify],
        "alert_trends": exp.alert_trends,
        "state": judged.state,
        "reason": judged.reason,
        "state_alerted": exp.state,
        "state_since": exp.state_since,
    }
    fmt = choose_format(as_json, False, False)
    if fmt is Format.JSON:
        print_json({**record, "alerts": [{k: v for k, v in r.items() if k != "id"} for r in sent]})
        return
    shown = {**record, "notify": ", ".join(shown_target(t) for t in exp.notify) or "no one"}
    emit_record({k: v for k, v in shown.items() if v not in (None, "")}, fmt,
                {"state_since": "time"})  # fmt: skip
    print()
    columns = [Column("created_at", "SENT", "time"), Column("state", "STATE", "status"),
               Column("target", "TARGET", "id"), Column("outcome", "OUTCOME", "status"),
               Column("detail", "DETAIL")]  # fmt: skip
    if sent:
        emit(sent, columns, fmt)
    else:
        print("no alerts sent yet")


@job_app.command("rm")
def job_rm(name: NameArgument, db: DbOption = None) -> None:
    """Forget a job's expectations (its runs and the alerts sent stay)."""
    from runstore.health.expectations import remove
    from runstore.store.store import Store

    if not remove(Store.open(db, mode="read"), name):
        fail(f"job {name!r} has no expectations")
    print(f"{name}: expectations removed")


@job_app.command("apply")
def job_apply(
    path: Annotated[Path, typer.Argument(help="A TOML file: one [jobs.NAME] table per job.")],
    remove_others: Annotated[
        bool,
        typer.Option("--remove-others", help="Also forget the jobs the file does not name."),
    ] = False,
    db: DbOption = None,
) -> None:
    """Set every job's expectations from a TOML file kept in git.

    Example file: `[jobs.nightly-backup]` then `schedule = "0 3 * * *"`, `tz = "Europe/Berlin"`,
    `grace = "30m"`, `max_duration = "2h"`, `notify = ["ntfy://ops-alerts"]`
    """
    from runstore.health.expectations import apply, read_toml
    from runstore.humanize import plural
    from runstore.store.store import Store

    wanted = read_toml(path)  # every job checked before any is set
    done = apply(Store.open(db), wanted, remove_others=remove_others)
    parts = [f"{len(done[k])} {k}" for k in ("new", "changed", "unchanged", "removed") if done[k]]
    print(f"{path}: {plural(len(wanted), 'job')} ({', '.join(parts) or 'none'})")
    if done["kept"]:
        print(f"not in the file, kept: {', '.join(done['kept'])} (--remove-others forgets them)")


@job_app.command("test")
def job_test(name: NameArgument, db: DbOption = None) -> None:
    """Send a test alert to each of the job's targets; exit 1 if any did not take it."""
    from runstore.health.alerts import send_test
    from runstore.store.store import Store

    outcomes = send_test(Store.open(db, mode="read"), name)
    for outcome in outcomes:
        print(f"sent to {outcome.target}" if outcome.sent else
              f"failed: {outcome.target}: {outcome.detail}")  # fmt: skip
    if not all(o.sent for o in outcomes):
        fail("not every target took the test alert (runstore job show " + name + ")")
