"""npvae._files.write_atomically: a file appears complete or not at all."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from npvae._files import write_atomically


def test_write_atomically_writes_the_whole_file_and_returns_its_path(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    assert write_atomically(target, lambda file: file.write(b"complete")) == target
    assert target.read_bytes() == b"complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_write_failing_part_way_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path, failure: BaseException) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old and good")

    def write_half_then_fail(file) -> None:
        file.write(b"new but ha")
        raise failure

    with pytest.raises(type(failure)):
        write_atomically(target, write_half_then_fail)
    assert target.read_bytes() == b"old and good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_new_files_get_the_usual_permissions_not_owner_only(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        target = write_atomically(tmp_path / "out.bin", lambda file: file.write(b"x"))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
