"""Where the store lives, and the warning for a store on a network filesystem."""

from __future__ import annotations

from pathlib import Path

from runstore.store.location import filesystem_type, network_filesystem_warning, resolve_db


def test_db_option_then_environment_then_user_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("RUNSTORE_DB", str(tmp_path / "env.db"))
    assert resolve_db(tmp_path / "opt.db") == f"sqlite:///{tmp_path / 'opt.db'}"
    assert resolve_db() == f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("RUNSTORE_DB", "postgresql+psycopg://u@h/db")
    assert resolve_db() == "postgresql+psycopg://u@h/db"
    monkeypatch.delenv("RUNSTORE_DB")
    assert resolve_db().endswith("/runstore/runstore.db")


def test_network_filesystem_is_recognised_from_the_mount_table(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/vda / ext4 rw 0 0\n"
        "server:/export /mnt/shared nfs4 rw 0 0\n"
        "//nas/jobs /mnt/nas cifs rw 0 0\n"
    )
    assert filesystem_type(Path("/mnt/shared/x/store.db"), str(mounts)) == "nfs4"
    assert filesystem_type(Path("/mnt/nas"), str(mounts)) == "cifs"
    assert filesystem_type(Path("/mnt/sharedother/store.db"), str(mounts)) == "ext4"


def test_local_store_gets_no_warning(tmp_path):
    assert network_filesystem_warning(tmp_path / "store.db") is None


def test_store_path_with_hash_and_question_mark_names_that_file(tmp_path):
    from conftest import SAMPLE_INPUT, Cli

    folder = tmp_path / "team#1?nightly"
    folder.mkdir()
    cli = Cli(str(folder / "store.db"))
    made = cli("run", "--input", str(SAMPLE_INPUT), "--output", str(tmp_path / "p.json"))
    assert made.exit_code == 0, made.stderr
    assert cli("db", "path").stdout.strip() == str(folder / "store.db")
    assert (folder / "store.db").stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json", "team#1?nightly"]
