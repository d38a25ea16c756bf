"""Unit tests of argv preparation: placeholders, then POSIX splitting."""

from __future__ import annotations

import re
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.codec import argv as argv_module
from worker.codec.argv import Paths, prepare_argv, split_arguments, substitute
from worker.codec.limits import DEFAULT_MAX_ARGUMENT_BYTES
from worker.errors import ArgvError

if TYPE_CHECKING:
    from _typeshed import TraceFunction

# A copy of the project's shared table of every function the controller calls.
FUNCTIONS_TSV = Path(__file__).resolve().parent.parent / "data" / "ccp-functions.tsv"

PATHS = Paths(
    shared_directory="/var/archivematica/sharedDirectory/",
    client_assets_directory="/usr/lib/archivematica/MCPClient/assets/",
    client_scripts_directory="/usr/lib/archivematica/MCPClient/clientScripts/",
    watch_directory="/var/archivematica/sharedDirectory/watchedDirectories/",
    rejected_directory="/var/archivematica/sharedDirectory/rejected/",
)
TASK_UUID = "5a9985d4-2b6b-4fd6-8b2b-6f3b2a7c8e10"
CREATED = "2024-08-04 21:34:35.241750+00:00"
NOW = datetime(2024, 8, 4, 21, 40, 1, 123456, tzinfo=UTC)
NOW_TEXT = "2024-08-04T21:40:01.123456+00:00"

# What the controller has already put in place of its own placeholders. As in
# Archivematica, unit paths are stored relative to "%sharedPath%", which the
# worker expands.
SIP_UUID = "c6e07b1d-52f4-4a59-8d6b-7e3b2c1a9f00"
FILE_UUID = "9b0e3c2d-1f4a-4e8b-a6c7-d5e4f3a2b1c0"
SIP_DIRECTORY = f"%sharedPath%currentlyProcessing/My Transfer-{SIP_UUID}/"
SIP_DIR = f"/var/archivematica/sharedDirectory/currentlyProcessing/My Transfer-{SIP_UUID}/"
CONTROLLER_VALUES = {
    "%SIPUUID%": SIP_UUID,
    "%SIPName%": "My Transfer",
    "%SIPDirectory%": SIP_DIRECTORY,
    "%SIPObjectsDirectory%": f"{SIP_DIRECTORY}objects/",
    "%SIPLogsDirectory%": f"{SIP_DIRECTORY}logs/",
    "%fileUUID%": FILE_UUID,
    "%relativeLocation%": f"{SIP_DIRECTORY}objects/photo 1.jpg",
    "%processingDirectory%": "%sharedPath%currentlyProcessing/",
    "%unitType%": "Transfer",
}


def controller(template: str) -> str:
    """Replace the controller's own placeholders, as the controller does before sending."""
    for placeholder, value in CONTROLLER_VALUES.items():
        template = template.replace(placeholder, value)
    return template


def templates() -> list[tuple[str, str]]:
    """(function, arguments template) for every row of the functions table."""
    rows = []
    for line in FUNCTIONS_TSV.read_text(encoding="utf-8").splitlines()[1:]:
        function, _manager, _per, arguments = line.split("\t")
        rows.append((function, arguments))
    return rows


def template(function: str, containing: str = "") -> str:
    """The one template of ``function`` that contains ``containing``."""
    found = {args for name, args in templates() if name == function and containing in args}
    assert len(found) == 1, found
    return found.pop()


def prepare(arguments: str, paths: Paths = PATHS, created: str = CREATED) -> list[str]:
    return prepare_argv(arguments, task_uuid=TASK_UUID, created_date=created, paths=paths, now=NOW)


def sub(arguments: str, paths: Paths = PATHS, created: str = CREATED) -> str:
    return substitute(arguments, task_uuid=TASK_UUID, created_date=created, paths=paths, now=NOW)


# --- substitute ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("placeholder", "value"),
    [
        ("%sharedPath%", "/var/archivematica/sharedDirectory/"),
        ("%clientAssetsDirectory%", "/usr/lib/archivematica/MCPClient/assets/"),
        ("%clientScriptsDirectory%", "/usr/lib/archivematica/MCPClient/clientScripts/"),
        ("%watchDirectory%", "/var/archivematica/sharedDirectory/watchedDirectories/"),
        ("%rejectedDirectory%", "/var/archivematica/sharedDirectory/rejected/"),
        ("%date%", NOW_TEXT),
        ("%taskUUID%", TASK_UUID),
        ("%jobCreatedDate%", CREATED),
    ],
)
def test_each_placeholder(placeholder: str, value: str) -> None:
    assert sub(f"<{placeholder}>") == f"<{value}>"
    assert sub(f"{placeholder}x{placeholder}") == f"{value}x{value}"


def test_trailing_slashes_are_kept_as_configured() -> None:
    no_slash = Paths(shared_directory="/srv/shared", client_assets_directory="/srv/assets")
    assert sub("%sharedPath%failed/", no_slash) == "/srv/sharedfailed/"
    assert sub("%clientAssetsDirectory%mets", no_slash) == "/srv/assetsmets"
    assert sub("%sharedPath%failed/") == "/var/archivematica/sharedDirectory/failed/"


def test_unknown_placeholders_are_left_alone() -> None:
    text = "%SIPUUID% %watchDirectoryPath%x %sharedpath% %date %% 100%"
    assert sub(text) == text


def test_job_created_date_gets_a_space_separator() -> None:
    assert sub("%jobCreatedDate%", created="2024-08-04T21:34:35+00:00") == (
        "2024-08-04 21:34:35+00:00"
    )


def test_date_with_a_naive_now() -> None:
    naive = datetime(2024, 8, 4, 21, 40, 1)
    text = substitute("%date%", task_uuid=TASK_UUID, created_date=CREATED, paths=PATHS, now=naive)
    assert text == "2024-08-04T21:40:01"


def test_values_are_not_expanded_twice() -> None:
    odd = Paths(shared_directory="/srv/%date%/", client_assets_directory="/a/")
    assert sub("%sharedPath%", odd) == "/srv/%date%/"


class _CountingNow(datetime):
    """A clock whose isoformat() counts its calls."""

    calls = 0

    def isoformat(self, *args: object, **kwargs: object) -> str:
        type(self).calls += 1
        return super().isoformat()


def test_a_placeholder_repeated_to_the_size_cap_is_computed_once() -> None:
    # The worst string for substitution: one placeholder, repeated up to the
    # argument cap. Each value is computed once per string, not per repeat.
    repeats = DEFAULT_MAX_ARGUMENT_BYTES // len("%date%")
    now = _CountingNow(2024, 8, 4, 21, 40, 1, tzinfo=UTC)
    text = substitute("%date%" * repeats + "%jobCreatedDate%" * 3, task_uuid=TASK_UUID,
                      created_date=CREATED, paths=PATHS, now=now)
    assert _CountingNow.calls == 1
    assert text == "2024-08-04T21:40:01+00:00" * repeats + sub("%jobCreatedDate%") * 3


def test_no_placeholder_returns_the_string_itself() -> None:
    text = '"abc" --flag'
    assert sub(text) is text


# --- split_arguments ----------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "argv"),
    [
        ("", []),
        ("   ", []),
        ('"a b" c', ["a b", "c"]),
        ("'a \"b\"' c\\ d", ['a "b"', "c d"]),
        ('--xml "/x/"metadata/m.xml', ["--xml", "/x/metadata/m.xml"]),
        ('--uuid="abc"', ["--uuid=abc"]),
        ('""', [""]),
        ('a  "b"  ', ["a", "b"]),
        ("# not a comment", ["#", "not", "a", "comment"]),
    ],
)
def test_split(arguments: str, argv: list[str]) -> None:
    assert split_arguments(arguments) == argv


@pytest.mark.parametrize(
    ("arguments", "argv"),
    [
        ('"echo \\`date\\`"', ["echo `date`"]),  # shlex keeps the backslash here
        ("echo \\`date\\`", ["echo", "`date`"]),  # shlex already drops it here
        ("'\\`'", ["`"]),  # Archivematica drops it everywhere; so do we
        ('"\\\\"', ["\\"]),
    ],
)
def test_backtick_unescape(arguments: str, argv: list[str]) -> None:
    assert split_arguments(arguments) == argv


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ('"abc', "No closing quotation"),
        ("'abc", "No closing quotation"),
        ('"a" "b', "No closing quotation"),
        ("abc\\", "No escaped character"),
    ],
)
def test_unsplittable_arguments_raise_argv_error(arguments: str, message: str) -> None:
    with pytest.raises(ArgvError, match=message):
        split_arguments(arguments)


def test_non_string_arguments_raise_argv_error() -> None:
    with pytest.raises(ArgvError, match="must be a string"):
        split_arguments(None)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(st.characters(codec="utf-8", exclude_characters="\x00"))))
def test_split_inverts_shell_quoting(words: list[str]) -> None:
    words = [word for word in words if "\\`" not in word]  # the one deliberate change
    assert split_arguments(shlex.join(words)) == words


# --- prepare_argv ------------------------------------------------------------------


def test_substitution_happens_before_splitting() -> None:
    spaced = Paths(shared_directory="/srv/shared dir/", client_assets_directory="/a/")
    assert prepare('"%sharedPath%failed/" x', spaced) == ["/srv/shared dir/failed/", "x"]
    # Unquoted in the template, the space splits the path: the template's business.
    assert prepare("%sharedPath%failed/", spaced) == ["/srv/shared", "dir/failed/"]


def test_a_quote_in_a_value_is_an_argv_error() -> None:
    quoted = Paths(shared_directory='/srv/"odd/', client_assets_directory="/a/")
    with pytest.raises(ArgvError):
        prepare('"%sharedPath%"', quoted)


def test_one_megabyte_of_arguments() -> None:
    word = "x" * 99
    arguments = f'"{word}" ' * 10_000
    assert prepare(arguments) == [word] * 10_000


# --- real templates from the functions table -------------------------------------


def test_clamscan() -> None:
    arguments = controller(template("archivematicaclamscan_v0.0"))
    assert prepare(arguments) == [
        FILE_UUID,
        f"{SIP_DIR}objects/photo 1.jpg",
        NOW_TEXT,
        TASK_UUID,
    ]


def test_copy_from_client_assets() -> None:
    arguments = controller(template("copy_v0.0", "README/README.html"))
    assert prepare(arguments) == [
        "/usr/lib/archivematica/MCPClient/assets/README/README.html",
        f"{SIP_DIR}README.html",
    ]


def test_copy_processing_config_with_a_flag() -> None:
    arguments = controller(template("copy_v0.0", "defaultProcessingMCP.xml"))
    assert prepare(arguments) == [
        "/var/archivematica/sharedDirectory/sharedMicroServiceTasksConfigs/"
        "processingMCPConfigs/defaultProcessingMCP.xml",
        f"{SIP_DIR}processingMCP.xml",
        "-n",
    ]


def test_create_event_uses_the_job_created_date() -> None:
    arguments = controller(template("createevent_v0.0"))
    assert prepare(arguments, created="2024-08-04T21:34:35.241750+00:00") == [
        "--eventType",
        "removal from backlog",
        "--fileUUID",
        FILE_UUID,
        "--eventIdentifierUUID",
        TASK_UUID,
        "--eventDateTime",
        CREATED,
    ]


def test_quote_next_to_unquoted_text_makes_one_word() -> None:
    arguments = controller(template("createtransfermetadata_v0.0"))
    assert prepare(arguments) == [
        "--sipUUID",
        SIP_UUID,
        "--xmlFile",
        f"{SIP_DIR}metadata/transfer_metadata.xml",
    ]


def test_rejected_directory_of_older_releases() -> None:
    arguments = controller(template("movesip_v0.0", "%rejectedDirectory%"))
    assert prepare(arguments) == [
        SIP_DIR,
        "/var/archivematica/sharedDirectory/rejected/.",
        SIP_UUID,
        "/var/archivematica/sharedDirectory/",
    ]


def test_double_spaces_between_words() -> None:
    arguments = controller(template("movetransfer_v0.0", "examineContentsChoice"))
    assert prepare(arguments) == [
        SIP_DIR,
        "/var/archivematica/sharedDirectory/watchedDirectories/workFlowDecisions/"
        "examineContentsChoice/.",
        SIP_UUID,
        "/var/archivematica/sharedDirectory/",
    ]


def test_equals_sign_options() -> None:
    arguments = controller(template("restructuredipforcontentdmupload_v0.0"))
    assert prepare(arguments) == [f"--uuid={SIP_UUID}", "--dipDir", SIP_DIR]


def test_empty_template() -> None:
    assert "" in {args for name, args in templates() if name == "getaipstoragelocations_v0.0"}
    assert prepare("") == []


def test_every_template_in_the_table_prepares() -> None:
    rows = templates()
    assert len(rows) > 150
    for function, arguments in rows:
        argv = prepare(controller(arguments))
        assert all(isinstance(word, str) for word in argv), function
        assert not any("%sharedPath%" in word or "%date%" in word for word in argv), function


# --- linear time, identical to shlex ------------------------------------------------
#
# The splitter used to be a regular expression with nested repetition, which
# backtracked exponentially when a quote was left open: a file name with an
# apostrophe froze the shim for good (issue 8). These tests hold the scanner
# that replaced it to shlex's results and errors, and bound its work.

#: The issue's reproducers, verbatim: each one hung (or took seconds) in the old splitter.
REPRODUCERS = [
    "--uuid 1234 --name it's",
    "a" * 18 + "'",
    "--file /var/archivematica/sharedDirectory/O'Brien.txt",
]


def shlex_reference(text: str) -> list[str] | str:
    """What the contract asks for: shlex's words with ``\\``` unescaped, or its error."""
    try:
        return [word.replace("\\`", "`") for word in shlex.split(text, posix=True)]
    except ValueError as exc:
        return f"cannot split arguments: {exc}"


def ours(text: str) -> list[str] | str:
    try:
        return split_arguments(text)
    except ArgvError as exc:
        return str(exc)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("text", REPRODUCERS)
def test_the_issue_reproducers_split_like_shlex(text: str) -> None:
    assert ours(text) == shlex_reference(text) == "cannot split arguments: No closing quotation"


@pytest.mark.timeout(20)
@pytest.mark.parametrize("text", [
    "--file \"/var/archivematica/sharedDirectory/O'Brien.txt\"",
    "--uuid 1234 --name \"it's\" --other 'x'",
    "--name it\\'s " + "a" * 5000,
])
def test_apostrophes_that_are_quoted_or_escaped_split(text: str) -> None:
    assert ours(text) == shlex_reference(text)
    assert any("'" in word for word in split_arguments(text))


class WorkMeter:
    """Counts the scanner's work: Python lines it runs and characters its searches examine.

    Each search of :mod:`worker.codec.argv` is one character class, which the regex
    engine checks from the start position to the first hit (or the end of the
    string) and no further; the meter adds that span for every call. Python
    lines are counted with ``sys.settrace``. Together they are the whole cost
    of a split, independent of the machine's speed or load.
    """

    PATTERNS = ("_BLANKS", "_UNQUOTED_STOP", "_SINGLE_QUOTE", "_DOUBLE_QUOTED_STOP")

    def __init__(self) -> None:
        self.lines = 0
        self.chars = 0
        self.originals = {name: getattr(argv_module, name) for name in self.PATTERNS}

    def __enter__(self) -> WorkMeter:
        for name, pattern in self.originals.items():
            setattr(argv_module, name, _CountingPattern(pattern, self))
        return self

    def __exit__(self, *exc_info: object) -> None:
        for name, pattern in self.originals.items():
            setattr(argv_module, name, pattern)

    def split(self, text: str) -> tuple[list[str] | str, int]:
        """``ours(text)`` and the work it took."""
        self.lines = self.chars = 0
        here = argv_module.__file__

        def local(frame: FrameType, event: str, arg: object) -> TraceFunction:
            if event == "line":
                self.lines += 1
            return local

        def calls(frame: FrameType, event: str, arg: object) -> TraceFunction | None:
            return local if frame.f_code.co_filename == here else None

        sys.settrace(calls)
        try:
            result = ours(text)
        finally:
            sys.settrace(None)
        return result, self.lines + self.chars


class _CountingPattern:
    def __init__(self, pattern: re.Pattern[str], meter: WorkMeter) -> None:
        self.pattern, self.meter = pattern, meter

    def _count(self, found: re.Match[str] | None, text: str, pos: int) -> re.Match[str] | None:
        self.meter.chars += (found.end() if found else len(text)) - pos + 1
        return found

    def search(self, text: str, pos: int = 0) -> re.Match[str] | None:
        return self._count(self.pattern.search(text, pos), text, pos)

    def match(self, text: str, pos: int = 0) -> re.Match[str] | None:
        return self._count(self.pattern.match(text, pos), text, pos)


#: Work allowed per character, and in total on top. The measured worst case is 12 per
#: character, for one-letter words between blanks; the old regex needed 2**n steps.
WORK_PER_CHAR = 16
WORK_CONSTANT = 40

#: Pieces an attacker (or an unlucky file name) strings together.
_PIECES = st.text(alphabet=st.sampled_from(list("ab '\"\\\t\n\r`é/%=-")), min_size=1, max_size=6)


@st.composite
def adversarial(draw: st.DrawFn) -> str:
    """Up to 64 KB of long runs of short pieces: quotes, backslashes, blanks, mixtures."""
    runs = draw(st.lists(st.tuples(_PIECES, st.integers(1, 16_384)), min_size=1, max_size=6))
    tail = draw(st.sampled_from(["", "'", '"', "\\", "\\'", "\"'", "it's"]))
    return ("".join(piece * count for piece, count in runs) + tail)[-65_536:]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=adversarial())
def test_adversarial_strings_split_like_shlex_in_linear_work(text: str) -> None:
    with WorkMeter() as meter:
        result, work = meter.split(text)
    assert result == shlex_reference(text)
    assert work <= WORK_PER_CHAR * len(text) + WORK_CONSTANT, (len(text), work)


@pytest.mark.parametrize("piece", ["a", "'", "a'", "''", '"', '\\"', "\\\\", "a ", "'a' ",
                                   '"a\\"', "it's ", "\\'", '"\\x'])
def test_doubling_the_input_at_most_doubles_the_work(piece: str) -> None:
    with WorkMeter() as meter:
        works = [meter.split(piece * count + "'")[1] for count in (4_000, 8_000, 16_000)]
    assert works[1] <= 2.05 * works[0] and works[2] <= 2.05 * works[1], works


@settings(max_examples=600, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab ' \"\t\n\r=%-/é\\`$#;\x0b\xa0\x00")), max_size=40))
def test_short_shellish_strings_split_like_shlex(text: str) -> None:
    assert ours(text) == shlex_reference(text)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_any_text_splits_like_shlex_or_raises_argv_error(text: str) -> None:
    # Whatever the characters (surrogates and control characters included),
    # nothing but ArgvError escapes, and only where shlex raises too.
    assert ours(text) == shlex_reference(text)
