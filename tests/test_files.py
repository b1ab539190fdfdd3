import os
from pathlib import Path

import pytest

from widenet.files import atomic_write


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_get_the_mode_of_new_files(tmp_path: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        path = atomic_write(tmp_path / "figures" / "a.png", b"png")
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask

