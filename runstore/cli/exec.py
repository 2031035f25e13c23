"""``runstore exec -- CMD``: record any command; ``runstore event``: add to the run from inside."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from runstore.cli._app import (
    ON_REFUSAL,
    DbOption,
    TagOption,
    alert_after_run,
    app,
    error,
    leave,
    note,
    parse_tags,
    warn,
)
from runstore.exec import HEAD_LINES, KILL_AFTER_S, MAX_RETRIES, RETRY_DELAY_S, TAIL_LINES
from runstore.humanize import format_duration

# Everything after the options is the command, its own options included: `exec ls -l` works.
_COMMAND_SETTINGS = {"allow_interspersed_args": False}
# Output lines a run keeps at each end: far more than anyone reads, far less than memory holds.
MAX_KEPT_LINES = 1_000_000


@app.command("exec", context_settings=_COMMAND_SETTINGS)
def exec_(
    command: Annotated[
        list[str],
        typer.Argument(help="The command and its arguments (put them after --).", metavar="CMD"),
    ],
    job: Annotated[
        str | None,
        typer.Option(
            "--job",
            "-j",
            help="Job name. Default: what CMD runs (`backup` for ./backup.sh, `etl.load` for "
            "python -m etl.load).",
        ),
    ] = None,
    run_id: Annotated[
        str | None,
        typer.Option("--run-id", help="Unique id for this run. Default: generated, time-sortable."),
    ] = None,
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout",
            help="Stop the command after this long (500ms, 30s, 5m, 2h): SIGTERM, exit 124.",
        ),
    ] = None,
    kill_after: Annotated[
        str,
        typer.Option("--kill-after", help="After --timeout's SIGTERM, wait this long, then KILL."),
    ] = format_duration(KILL_AFTER_S),
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="Show the command's output only when it fails."),
    ] = False,
    log: Annotated[
        Path | None,
        typer.Option("--log", help="Also write the run as run_log.json here (- for stdout)."),
    ] = None,
    head_lines: Annotated[
        int,
        typer.Option(
            "--head-lines", min=0, max=MAX_KEPT_LINES, help="Output lines stored from the start."
        ),
    ] = HEAD_LINES,
    tail_lines: Annotated[
        int,
        typer.Option(
            "--tail-lines", min=0, max=MAX_KEPT_LINES, help="Output lines stored from the end."
        ),
    ] = TAIL_LINES,
    tags: TagOption = None,
    retries: Annotated[
        int,
        typer.Option(
            "--retries",
            min=0,
            max=MAX_RETRIES,
            metavar="N",
            help="Run CMD again when it fails, up to N more times: one run, every attempt in it.",
        ),
    ] = 0,
    retry_delay: Annotated[
        str,
        typer.Option("--retry-delay", metavar="DURATION", help="Wait between attempts: 30s, 5m."),
    ] = format_duration(RETRY_DELAY_S),
    retry_on: Annotated[
        str | None,
        typer.Option(
            "--retry-on",
            metavar="CODES",
            help="Retry only on these exit codes (1,75). Default: any failure.",
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Run CMD as a recorded run: same output, same exit code, same signals.

    The run is recorded before CMD starts. Its stdout and stderr pass through unchanged, and
    its output lines are stored as `output` events: the first --head-lines and the last
    --tail-lines, with a marker counting what was left out. Also stored: exit code, signal,
    duration, max RSS and CPU time, host, user, cwd and the command line (secrets redacted).

    CMD sees RUNSTORE_RUN_ID, RUNSTORE_DB and RUNSTORE_EVENTS, so `runstore event` and Python
    code using `runstore.LoggingHandler` add their events to this run. RUNSTORE_EVENTS is a
    channel: each JSON object written to it as a line is an event, recorded with no process
    started: `echo '{"type": "rows_loaded", "rows": 120}' >> "$RUNSTORE_EVENTS"`.

    SIGINT, SIGTERM and SIGHUP are passed on to CMD; when CMD then ends unsuccessfully the run
    is `cancelled`. If the store cannot be written, CMD still runs and keeps its exit code; one
    warning says so. With --quiet, CMD's output is held in a temporary file and shown only if
    CMD fails.

    With --retries, a failed CMD runs again after --retry-delay (a timeout counts as a
    failure; CMD not found, or cancelled, does not): the attempts are one run, each attempt's
    events carry its number, and the run's outcome, exit code and alerts are the last
    attempt's.

    Exit codes: CMD's own; 128+N when CMD dies of signal N; 124 on --timeout; 126 when CMD
    cannot be executed; 127 when it is not found; 2 for a bad runstore option.

    Example: runstore exec --job nightly-backup --timeout 2h -- ./backup.sh --full
    """
    from runstore.errors import UsageError
    from runstore.exec.command import ExecOptions, run_command
    from runstore.humanize import parse_duration
    from runstore.signals import exit_on_signal

    if not command:
        raise UsageError("no command given: runstore exec [OPTIONS] -- CMD [ARGS...]")
    options = ExecOptions(  # checks every value before anything runs
        job=job,
        run_id=run_id,
        db=db,
        timeout=parse_duration(timeout, "--timeout") if timeout is not None else None,
        kill_after=parse_duration(kill_after, "--kill-after"),
        quiet=quiet,
        head_lines=head_lines,
        tail_lines=tail_lines,
        tags=parse_tags(tags),
        retries=retries,
        retry_delay=parse_duration(retry_delay, "--retry-delay"),
        retry_on=_exit_codes(retry_on) if retry_on is not None else None,
    )
    options = replace(options, log_path=_usable_log(log, db))
    result = run_command(command, options, warn=warn, note=None if quiet else note)
    if result.spawn_error is not None:
        error(result.spawn_error)
    if result.run_id is not None:
        alert_after_run(db, result.job)
    exit_on_signal(result.exit_code)
    leave(result.exit_code)


def _exit_codes(text: str) -> tuple[int, ...]:
    """``1,75`` as exit codes."""
    from runstore.errors import UsageError

    try:
        codes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise UsageError(
            f"--retry-on: exit codes, comma-separated, such as 1,75 (got {text!r})"
        ) from None
    if not all(0 < code < 256 for code in codes):
        raise UsageError(f"--retry-on: exit codes are 1 to 255 (got {text!r})")
    return codes


def _usable_log(log: Path | None, db: str | None) -> Path | None:
    """A --log naming the store is a usage error (the command does not run); one that cannot be
    written is a warning: the job runs anyway."""
    if log is None:
        return None
    from runstore.errors import OutputError
    from runstore.files import check_output, refuse_clashes
    from runstore.store.location import resolve_db, store_files

    refuse_clashes({"--log": log}, store_files=store_files(resolve_db(db)))
    try:
        check_output(log)
    except OutputError as exc:
        warn(f"{exc}; the run is recorded in the store only")
        return None
    return log


class Level(str, Enum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


@app.command()
def event(
    message: Annotated[
        str | None, typer.Argument(help="What happened, in a few words.", show_default=False)
    ] = None,
    level: Annotated[Level, typer.Option("--level", "-l", help="Event level.")] = Level.info,
    event_type: Annotated[
        str | None,
        typer.Option(
            "--type",
            "-t",
            help="Event type. Default: `warning` or `error` for those levels, else `log`.",
            show_default=False,
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option("--data", "-d", help="More fields, as a JSON object: '{\"rows\": 120}'."),
    ] = None,
    metrics: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            "-m",
            metavar="NAME=NUMBER",
            help="Record a metric of the run, such as rows_loaded=120 (repeatable).",
            show_default=False,
        ),
    ] = None,
    step: Annotated[
        int | None,
        typer.Option("--step", help="The metrics' step (an epoch, a batch number).", min=0),
    ] = None,
    run_id: Annotated[
        str | None,
        typer.Option("--run-id", help="The run to add to. Default: $RUNSTORE_RUN_ID."),
    ] = None,
    db: DbOption = None,
) -> None:
    """Add an event or a metric to a running run: the one `runstore exec` started
    (RUNSTORE_RUN_ID).

    For shell scripts run under `runstore exec`, where it costs little more than a Python start
    (the event goes down the run's events channel, RUNSTORE_EVENTS). Warnings and errors count
    in the run's counters; metrics are charted over the job's runs (`runstore metric JOB NAME`).
    When the event cannot be recorded (no run, a finished run, a store that cannot be written) a
    warning says why and the exit code is still 0: logging never fails a job. A malformed
    --data, --type or --metric is a usage error (exit 2).

    Example: runstore event "loaded rows" --data '{"rows": 120}'

    Example: runstore event "source is slow" --level warning

    Example: runstore event --metric rows_loaded=120 --metric bytes=5e6
    """
    from runstore.channel import METRIC, default_event_type, encode, metric_fields, send
    from runstore.errors import UsageError
    from runstore.record.ids import parse_metric

    fields: dict[str, Any] = {}
    if data is not None:
        try:
            fields = json.loads(data)
        except ValueError as exc:
            raise UsageError(f"--data is not valid JSON: {exc}") from None
        if not isinstance(fields, dict):
            raise UsageError("--data must be a JSON object, such as '{\"rows\": 120}'")
    kind = event_type if event_type is not None else default_event_type(level.value)
    if not kind.strip() or len(kind) > 64:
        raise UsageError("--type must be 1 to 64 characters")
    measured = [parse_metric(text) for text in metrics or []]
    if message is None and not measured:
        raise UsageError("give the event's MESSAGE, or a --metric NAME=NUMBER")
    if step is not None and not measured:
        raise UsageError("--step goes with --metric")

    sent = [metric_fields(name, value, step) for name, value in measured]
    lines = [encode(METRIC, "info", None, fields) for fields in sent]
    if message is not None:
        lines.insert(0, encode(kind, level.value, message, {"message": message, **fields}))
    own = ("type", "level", "message")  # on the channel these would be the event's own fields
    direct = run_id is not None or db is not None or any(key in fields for key in own)
    if not direct and send(b"".join(lines)):
        leave(0)  # on its way down the events channel of the run we are in
    try:
        from runstore.record.logger import RunLogger

        run = RunLogger.attach(run_id, db=db)
        if message is not None:
            run.log_event(kind, {"message": message, **fields}, level=level.value, message=message)
        for metric in sent:
            run.log_metric(metric["name"], metric["value"], step)
        run.finish()
    except Exception as exc:  # recording must never break the job that calls us
        from runstore.errors import reason

        warn(f"event not recorded: {reason(exc)}")
    leave(0)


def record_refused(args: list[str], problem: str) -> None:
    """`runstore exec` refused its options: CMD does not run, and a failed run says why, so a
    typo in a crontab line shows in the history (and in `check`) instead of the job vanishing.
    The job is --job's, else what CMD runs; nothing is recorded when neither can be told."""
    from runstore.errors import RunstoreError, reason
    from runstore.exec.naming import default_job_name
    from runstore.record.ids import check_job, check_run_id
    from runstore.record.logger import RunLogger

    options, command = _split_exec_args(args)
    job, run_id, db = options.get("--job"), options.get("--run-id"), options.get("--db")
    if job is not None and _refuses(check_job, job):
        job = None
    if run_id is not None and _refuses(check_run_id, run_id):
        run_id = None
    job = job or (default_job_name(command) if command else None)
    if job is None:
        return
    try:
        try:
            run = RunLogger(job, run_id, db=db, argv=command or args)
        except RunstoreError:
            if run_id is None:
                raise
            run = RunLogger(job, db=db, argv=command or args)  # its id is taken: a new one
        with run:
            run.log_error(f"not run: {problem}", kind="UsageError")
            run.finish("failed", exit_code=2, error_summary=problem)
    except Exception as exc:  # the usage error is what the user must see first
        warn(f"the refused run is not recorded either: {reason(exc)}")


def _refuses(check: Callable[[str], object], value: str) -> bool:
    try:
        check(value)
    except Exception:
        return True
    return False


# exec's options that take a value (the others are flags), and the ones a refused run reads.
_VALUED = ("--job", "-j", "--run-id", "--timeout", "--kill-after", "--log", "--head-lines",
           "--tail-lines", "--db", "--tag", "--retries", "--retry-delay", "--retry-on")  # fmt: skip
_READ = {"--job": "--job", "-j": "--job", "--run-id": "--run-id", "--db": "--db"}


def _split_exec_args(args: list[str]) -> tuple[dict[str, str], list[str]]:
    """The --job, --run-id and --db given to `exec`, and CMD: the words after `--`, else from
    the first word that is not an option."""
    words = args[args.index("exec") + 1 :] if "exec" in args else list(args)
    options: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":
            return options, words[i + 1 :]
        if not word.startswith("-") or word == "-":
            return options, words[i:]
        name, has_value, value = word.partition("=")
        if name in _VALUED and not has_value:
            value = words[i + 1] if i + 1 < len(words) else ""
            i += 1
        if name in _READ:
            options[_READ[name]] = value
        i += 1
    return options, []


ON_REFUSAL["exec"] = record_refused
