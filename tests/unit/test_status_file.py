"""status.json in the state dir: written whole, read back, unreadable means no status."""

from __future__ import annotations

from pathlib import Path

from pgha_operator.shell.state.status_file import STATUS_FILE, read_status, write_status


def test_written_status_reads_back_and_leaves_no_temp_file(tmp_path: Path) -> None:
    write_status(tmp_path, {"cluster": "demo", "phase": "Ready", "members": [1, 2]})
    assert read_status(tmp_path) == {"cluster": "demo", "phase": "Ready", "members": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == [STATUS_FILE]


def test_missing_corrupt_or_non_mapping_status_reads_as_none(tmp_path: Path) -> None:
    assert read_status(tmp_path) is None
    (tmp_path / STATUS_FILE).write_text('{"cluster": "de')
    assert read_status(tmp_path) is None
    (tmp_path / STATUS_FILE).write_text("[1, 2]")
    assert read_status(tmp_path) is None
