"""gearman3 0.2.1's protocol module: the part amworker uses (the package ships no types)."""

import array
from typing import Final

NULL_CHAR: Final[bytes]
MAGIC_RES_STRING: Final[bytes]
MAGIC_REQ_STRING: Final[bytes]
COMMAND_HEADER_SIZE: Final[int]

GEARMAN_COMMAND_CAN_DO: Final[int]
GEARMAN_COMMAND_CANT_DO: Final[int]
GEARMAN_COMMAND_RESET_ABILITIES: Final[int]
GEARMAN_COMMAND_PRE_SLEEP: Final[int]
GEARMAN_COMMAND_NOOP: Final[int]
GEARMAN_COMMAND_SUBMIT_JOB: Final[int]
GEARMAN_COMMAND_JOB_CREATED: Final[int]
GEARMAN_COMMAND_GRAB_JOB: Final[int]
GEARMAN_COMMAND_NO_JOB: Final[int]
GEARMAN_COMMAND_JOB_ASSIGN: Final[int]
GEARMAN_COMMAND_WORK_STATUS: Final[int]
GEARMAN_COMMAND_WORK_COMPLETE: Final[int]
GEARMAN_COMMAND_WORK_FAIL: Final[int]
GEARMAN_COMMAND_GET_STATUS: Final[int]
GEARMAN_COMMAND_ECHO_REQ: Final[int]
GEARMAN_COMMAND_ECHO_RES: Final[int]
GEARMAN_COMMAND_SUBMIT_JOB_BG: Final[int]
GEARMAN_COMMAND_ERROR: Final[int]
GEARMAN_COMMAND_STATUS_RES: Final[int]
GEARMAN_COMMAND_SUBMIT_JOB_HIGH: Final[int]
GEARMAN_COMMAND_SET_CLIENT_ID: Final[int]
GEARMAN_COMMAND_CAN_DO_TIMEOUT: Final[int]
GEARMAN_COMMAND_ALL_YOURS: Final[int]
GEARMAN_COMMAND_WORK_EXCEPTION: Final[int]
GEARMAN_COMMAND_OPTION_REQ: Final[int]
GEARMAN_COMMAND_OPTION_RES: Final[int]
GEARMAN_COMMAND_WORK_DATA: Final[int]
GEARMAN_COMMAND_WORK_WARNING: Final[int]
GEARMAN_COMMAND_GRAB_JOB_UNIQ: Final[int]
GEARMAN_COMMAND_JOB_ASSIGN_UNIQ: Final[int]
GEARMAN_COMMAND_SUBMIT_JOB_HIGH_BG: Final[int]
GEARMAN_COMMAND_SUBMIT_JOB_LOW: Final[int]
GEARMAN_COMMAND_SUBMIT_JOB_LOW_BG: Final[int]
GEARMAN_COMMAND_TEXT_COMMAND: Final[int]

#: Each binary command's argument names, in wire order.
GEARMAN_PARAMS_FOR_COMMAND: dict[int, tuple[str, ...]]
GEARMAN_COMMAND_TO_NAME: dict[int, str]

def get_command_name(cmd_type: int) -> str | int: ...

# Parsers take what has ``.tobytes()`` (gearman3's array buffer, or a memoryview);
# they return (None, None, 0) until a whole command is there.
def parse_binary_command(
    in_buffer: memoryview | array.array[int], is_response: bool = True
) -> tuple[int | None, dict[str, bytes] | None, int]: ...
def parse_text_command(
    in_buffer: memoryview | array.array[int],
) -> tuple[int | None, dict[str, bytes] | None, int]: ...
def pack_binary_command(
    cmd_type: int, cmd_args: dict[str, bytes | str], is_response: bool = False
) -> bytes: ...
def pack_text_command(cmd_type: int, cmd_args: dict[str, bytes | str]) -> str: ...
