"""``amworker submit``'s reading of an answer: the exit code is an integer or a DecodeError."""

from __future__ import annotations

import pytest

from worker.cli.submit import exit_code_of
from worker.errors import DecodeError

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize("code", [0, 1, 255])
def test_an_integer_exit_code_is_returned(code: int) -> None:
    assert exit_code_of("t1", {"exitCode": code, "stdout": ""}) == code


@pytest.mark.parametrize("answer", [{}, {"exitCode": None}, {"exitCode": "1"}, {"exitCode": 1.0}])
def test_a_missing_or_non_integer_exit_code_names_the_task(answer: dict[str, object]) -> None:
    with pytest.raises(DecodeError, match="task t1: exitCode"):
        exit_code_of("t1", answer)
