"""Figure 3: start-up. ``runstore --version`` next to ``python -c "import typer"``, and
``runstore history --limit 20`` on an empty (already created) store, output piped, next to
``python -c "import sqlalchemy, typer"``: a command should cost little more than the libraries it
cannot do without. Wall time of the whole process, median of interleaved repetitions.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import (
    PYTHON,
    RUNSTORE,
    arguments,
    at_most_ratio,
    child_env,
    interleaved,
    median,
    progress,
    report,
    run_child,
)


def main() -> None:
    def options(parser: argparse.ArgumentParser) -> None:
        pass

    args = arguments(__doc__.splitlines()[0], options)
    repeat = args.repeat or (5 if args.quick else 21)
    with tempfile.TemporaryDirectory(prefix="runstore-bench-") as tmp:
        db = str(Path(tmp) / "empty.db")
        env = child_env()
        history = [RUNSTORE, "history", "--limit", "20", "--db", db]
        run_child([RUNSTORE, "db", "upgrade", "--quiet", "--db", db], env=env)  # not measured

        def timed(argv: list[str]) -> float:
            return run_child(argv, env=env).wall_s

        commands = {
            "version": [RUNSTORE, "--version"],
            "typer": [PYTHON, "-c", "import typer"],
            "history": history,
            "sqlalchemy+typer": [PYTHON, "-c", "import sqlalchemy, typer"],
        }
        progress(f"startup: {len(commands)} commands, {repeat} interleaved repetitions")
        samples = interleaved(
            {name: (lambda argv=argv: timed(argv)) for name, argv in commands.items()},
            repeat,
            warmup=1,
        )
    ms = {name: median(values) * 1000 for name, values in samples.items()}
    report(
        [
            at_most_ratio("runstore --version", ms["version"], ms["typer"], "ms", 1.3),
            at_most_ratio(
                "runstore history --limit 20", ms["history"], ms["sqlalchemy+typer"], "ms", 1.3
            ),
        ],
        [
            "baselines: python -c 'import typer'; python -c 'import sqlalchemy, typer'",
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
