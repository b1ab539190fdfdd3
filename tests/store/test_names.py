"""Names that become paths: run ids and sweep names are plain file names."""

from __future__ import annotations

import pytest

from widenet.errors import WidenetError
from widenet.store.names import MAX_SWEEP_NAME, RUN_FOLDER, check_run_id, check_sweep_name


@pytest.mark.parametrize("name", ["s", "toy-sweep-20260101-000000-ab12", "a.b_c-D9",
                                  "x" * MAX_SWEEP_NAME])
def test_plain_sweep_names_are_accepted(name: str) -> None:
    assert check_sweep_name(name) == name


@pytest.mark.parametrize("run_id", ["toy-20260101-000000-ab12", "a", "kernel.v2_x-1"])
def test_plain_run_ids_are_accepted(run_id: str) -> None:
    assert check_run_id(run_id, "here") == run_id


@pytest.mark.parametrize("run_id", ["", ".", "..", "../../elsewhere/x", "/tmp/abs", "a/b",
                                    "a\\b", "nul\0byte", ".hidden", "C:evil", "a b", None, 7])
def test_run_ids_that_are_not_plain_are_refused(run_id: object) -> None:
    with pytest.raises(WidenetError, match="from the store is not a plain name"):
        check_run_id(run_id, "the store")


def test_a_long_bad_id_is_cut_in_the_message() -> None:
    with pytest.raises(WidenetError) as caught:
        check_run_id("../" * 1000, "here")
    assert len(str(caught.value)) < 400


def test_new_run_ids_have_the_run_folder_shape() -> None:
    from widenet.store import RunStore

    assert RUN_FOLDER.fullmatch(RunStore.new_run_id("toy"))
