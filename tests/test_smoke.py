from __future__ import annotations

from conftest import SAMPLE_INPUT


def test_run_sample_input_records_nine_items(cli, tmp_path):
    result = cli(
        "run",
        "--input",
        str(SAMPLE_INPUT),
        "--output",
        str(tmp_path / "p.json"),
        "--run-id",
        "a1",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert '"total": 9' in result.stdout
