"""What crosses between the shim and the pool for one slice, as records.

* :class:`SliceMessage`: the shim's ``amworker.run_slice`` message (its
  keyword arguments). Its fields are the task's parameters; a unit test
  fails if the two drift apart, since nothing else checks a message sent by
  name against the task that receives it.
* :class:`SliceEnvelope`: what a slice task returns. Small, whatever the
  output: it goes into the task events and the chord's counter. A worker of
  this release stores none in Celery's result store; one of an older release
  stored it, and published it on pub/sub, where a large one would overflow
  the shim's client output buffer.
* :func:`encode_results` / :func:`decode_results`: the slice's results, kept
  under their own key (``keys.outcome_key``) and fetched once by the shim;
  :func:`encode_result_parts` cuts results too big for one Redis value.
  :func:`encode_ready_results` keeps them instead as the slice's part of a
  JSON answer (:class:`ReadyResults`), when the shim asks for that.
* :class:`CollectMessage` / :class:`CollectEnvelope`: the same for the chord
  callback, which says every slice reported (the shim usually has its
  answer by then: it wakes on each slice's stored results).

Every ``from_json`` raises :class:`~worker.contract.records.RecordError`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from worker.codec.records import TaskResult, Timestamps
from worker.codec.wire import EXIT_CODE_KEY, FINISHED_KEY, STDERR_KEY, STDOUT_KEY, json_answer_part
from worker.contract import records
from worker.contract.plan import JobSpec
from worker.contract.records import RecordError
from worker.errors import REASON_PREFIX, DecodeError

#: Celery name of the task that runs one slice (worker.tasks.run_slice).
RUN_SLICE = "amworker.run_slice"
#: Celery name of the chord callback (worker.tasks.collect).
COLLECT = "amworker.collect"


@dataclass(frozen=True)
class SliceMessage:
    """Slice ``index`` of ``count`` of ``batch``: ``call(jobs)`` of ``function``.

    The fields are :func:`worker.tasks.run_slice`'s parameters, by name.
    """

    function: str
    #: The batch token (worker.contract.keys.batch_token).
    batch: str
    index: int
    count: int
    jobs: tuple[JobSpec, ...]
    #: Where a shim of the previous release named the script entry; this
    #: release sends it in a header (keys.SCRIPT_HEADER), so it stays None.
    script: str | None = None

    def to_kwargs(self) -> dict[str, object]:
        """The task's keyword arguments, JSON-safe.

        ``script`` only when set: a worker of an older release has no such
        parameter, and an unknown argument would fail every slice.
        """
        kwargs: dict[str, object] = {
            "function": self.function, "batch": self.batch, "index": self.index,
            "count": self.count, "jobs": [job.to_json() for job in self.jobs],
        }
        if self.script is not None:
            kwargs["script"] = self.script
        return kwargs

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, object]) -> SliceMessage:
        """Inverse of :meth:`to_kwargs`; raises :class:`~worker.contract.records.RecordError`."""
        what = "slice message"
        count = records.count(kwargs, "count", what, minimum=1)
        index = records.count(kwargs, "index", what)
        if index >= count:
            raise RecordError(f"{what}: index {index} is not below count {count}")
        jobs = records.field(kwargs, "jobs", list, what)
        return cls(
            function=records.field(kwargs, "function", str, what),
            batch=records.field(kwargs, "batch", str, what),
            index=index,
            count=count,
            jobs=tuple(JobSpec.from_json(job) for job in jobs),
            script=records.optional(kwargs, "script", str, what, None),
        )

    def repr_kwargs(self) -> str:
        """What Flower and the logs show instead of a wall of argv."""
        return repr({"function": self.function, "batch": self.batch,
                     "slice": f"{self.index + 1}/{self.count}", "tasks": len(self.jobs)})


@dataclass(frozen=True)
class SliceEnvelope:
    """What a slice task returns: which slice it was, and how many tasks ran.

    Stored as the slice's Celery result only by a worker of an older release
    (this one stores none on success, see ``worker.tasks.run_slice``); the
    shim still reads such a one, with results inline from an older one yet.
    """

    index: int
    count: int
    tasks: int
    #: The results themselves, only in an envelope from a worker of an older
    #: release (mid-upgrade), which returned them instead of storing them.
    inline: tuple[TaskResult, ...] | None = None

    def to_json(self) -> dict[str, object]:
        """JSON-safe form (Celery's JSON result serializer)."""
        data: dict[str, object] = {"index": self.index, "count": self.count, "tasks": self.tasks}
        if self.inline is not None:
            stamps = Timestamps()
            data["results"] = [r.to_json(stamps) for r in self.inline]
        return data

    @classmethod
    def from_json(cls, data: object) -> SliceEnvelope:
        """Inverse of :meth:`to_json`, also for an older worker's envelope (results inline)."""
        what = "slice envelope"
        envelope = records.mapping(data, what)
        inline = None
        if "results" in envelope:
            inline = tuple(results_from_json(envelope["results"], f"{what} results"))
        tasks = len(inline) if inline is not None and "tasks" not in envelope \
            else records.count(envelope, "tasks", what)
        return cls(index=records.count(envelope, "index", what),
                   count=records.count(envelope, "count", what, minimum=1), tasks=tasks, inline=inline)


@dataclass(frozen=True)
class CollectMessage:
    """The chord callback's arguments: the batch and the slices that reported.

    The fields are :func:`worker.tasks.collect`'s parameters, by name.
    """

    function: str
    batch: str
    slices: tuple[str, ...]

    def to_kwargs(self) -> dict[str, object]:
        """The task's keyword arguments, JSON-safe."""
        return {"function": self.function, "batch": self.batch, "slices": list(self.slices)}

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, object]) -> CollectMessage:
        """Inverse of :meth:`to_kwargs`; raises :class:`~worker.contract.records.RecordError`."""
        what = "collect message"
        slices = records.field(kwargs, "slices", list, what)
        return cls(
            function=records.field(kwargs, "function", str, what),
            batch=records.field(kwargs, "batch", str, what),
            slices=tuple(records.check(s, "slices", str, what) for s in slices),
        )


@dataclass(frozen=True)
class CollectEnvelope:
    """The chord callback's stored result: "every slice of the batch reported"."""

    function: str
    batch: str
    slices: int

    def to_json(self) -> dict[str, object]:
        """JSON-safe form (Celery's JSON result serializer)."""
        return {"function": self.function, "batch": self.batch, "slices": self.slices}

    @classmethod
    def from_json(cls, data: object) -> CollectEnvelope:
        """Inverse of :meth:`to_json`; raises :class:`~worker.contract.records.RecordError`.

        A callback of an earlier release also said how many tasks there
        were (``tasks``); that is ignored.
        """
        what = "collect envelope"
        envelope = records.mapping(data, what)
        return cls(function=records.field(envelope, "function", str, what),
                   batch=records.field(envelope, "batch", str, what),
                   slices=records.count(envelope, "slices", what))


#: The most characters of a slice's stored results in one Redis value.
#: Redis refuses a value over 512 MB (``proto-max-bulk-len``), and a slice's
#: output can exceed that: 8 MiB per stream per job by default, up to six
#: characters of JSON per byte of binary output, 128 jobs. Beyond this the
#: results go in parts (:func:`encode_result_parts`). Half the limit (the
#: JSON is ASCII: a character is a byte), so a part stays well under it; a
#: shim of an earlier release reads one value only, and so cannot read a
#: slice stored in parts (docs/operations.md: upgrade shims first).
OUTCOME_PART_CHARS = 256 * 1024 * 1024
#: JSON characters one character of output may take at most (a character
#: outside the BMP is two ``\uXXXX`` escapes), and a result takes besides its
#: output and UUID (its keys, exit code and time): a bound on the encoded size.
_JSON_CHARS_PER_CHAR = 12
_JSON_CHARS_PER_RESULT = 256


def encode_results(results: Sequence[TaskResult]) -> str:
    """A slice's results as stored under ``keys.outcome_key`` (and in answer records)."""
    stamps = Timestamps()
    return json.dumps([r.to_json(stamps) for r in results])


def fit_one_part(results: Sequence[TaskResult], part_chars: int = OUTCOME_PART_CHARS) -> bool:
    """Whether ``results`` certainly fit in one stored value of ``part_chars`` characters
    (a bound, not their encoding)."""
    bound = sum(_JSON_CHARS_PER_RESULT + len(r.uuid)
                + _JSON_CHARS_PER_CHAR * (len(r.stdout) + len(r.stderr)) for r in results)
    return bound <= part_chars


def encode_result_parts(results: Sequence[TaskResult], part_chars: int = OUTCOME_PART_CHARS) -> list[str]:
    """A slice's results as stored: the value of ``keys.outcome_key``, then any more parts.

    Almost always one part, the text of :func:`encode_results`. Results that
    take more than ``part_chars`` characters are cut, between results, into
    parts of about that much at most; a single bigger result is a part of its
    own (one job's output is bounded far below Redis's limit). The first part
    then says how many parts there are (``{"parts": n, "results": [...]}``),
    so the shim knows to read the rest (``keys.outcome_more_key``); each
    other part is a list for :func:`decode_results`. :func:`decode_outcome`
    reads the first part.
    """
    if fit_one_part(results, part_chars):
        # Almost every slice: one part for certain, encoded in one call.
        return [encode_results(results)]
    # Each result encoded once, and the parts built as they go: the text is
    # held once, not also as one whole to be cut.
    stamps = Timestamps()
    parts: list[str] = []
    items: list[str] = []
    size = 2  # the brackets
    for result in results:
        item = json.dumps(result.to_json(stamps))
        if items and size + 2 + len(item) > part_chars:  # 2: the separator
            parts.append("[" + ", ".join(items) + "]")
            items, size = [], 2
        size += len(item) + (2 if items else 0)
        items.append(item)
    # The same text as encode_results: json.dumps separates items with ", ".
    parts.append("[" + ", ".join(items) + "]")
    if len(parts) == 1:
        # One result, bigger alone than a part: nothing to cut.
        return parts
    return [f'{{"parts": {len(parts)}, "results": {parts[0]}}}', *parts[1:]]


def decode_results(raw: bytes | str) -> list[TaskResult]:
    """Inverse of :func:`encode_results`; raises :class:`~worker.contract.records.RecordError`."""
    return results_from_json(records.loads(raw, "stored results"), "stored results")


def decode_outcome(raw: bytes | str) -> tuple[list[TaskResult], int]:
    """The first part of stored results (:func:`encode_result_parts`, or
    :func:`encode_ready_results`): its results, and how many more parts
    follow; raises :class:`~worker.contract.records.RecordError`."""
    what = "stored results"
    ready = ReadyResults.parse(raw)
    if ready is not None:
        return ready.results(), 0
    data = records.loads(raw, what)
    if isinstance(data, dict):
        more = records.count(data, "parts", what, minimum=2) - 1
        return results_from_json(data.get("results"), what), more
    return results_from_json(data, what), 0


def results_from_json(items: object, what: str = "stored results") -> list[TaskResult]:
    """The results in ``items`` (a parsed JSON list of result objects)."""
    if not isinstance(items, list):
        raise RecordError(f"{what}: expected a list of results, got {type(items).__name__}: "
                          f"{records.show(items)}")
    results = []
    stamps = Timestamps()
    for position, item in enumerate(items):
        try:
            # The common case first: the label is built only for a message.
            mapping = item if type(item) is dict else records.mapping(item, f"{what}[{position}]")
            results.append(TaskResult.from_json(mapping, stamps))
        except RecordError:
            raise
        except DecodeError as exc:
            # TaskResult's own message quotes the task UUID, which may be huge.
            raise RecordError(f"{what}[{position}]: {records.show(str(exc))}") from None
    return results


#: The first line of a slice's results stored answer-ready (:func:`encode_ready_results`).
#: A JSON list or object (:func:`encode_results`) never starts with it.
READY_MARK = b"amworker-results/2"
#: What a slice message's ``keys.RESULTS_HEADER`` says when the shim wants them so.
READY_FORMAT = "2"
_READY_HEAD = READY_MARK + b"\n"


def encode_ready_results(results: Sequence[TaskResult]) -> bytes | None:
    """A slice's results stored as its part of the JSON answer, with a small index.

    Three lines: :data:`READY_MARK`; an ASCII JSON index (the task UUIDs in
    order, which of them want output, how many tasks amworker failed
    itself, and amworker's reason for those that want no output, which the
    part leaves out); the slice's members of the answer's ``task_results``
    (:func:`~worker.codec.wire.json_answer_part`), which no newline can be
    part of. The shim answers a JSON request by joining its slices' third
    lines, instead of decoding each result and encoding it again (about a
    fifth of its CPU per batch, bench/analysis.md round fifteen). ``None``
    when the part cannot be written as UTF-8; the caller stores
    :func:`encode_result_parts` then.
    """
    part = json_answer_part(results)
    if part is None:
        return None
    failed = [r for r in results if failed_by_amworker(r)]
    index = json.dumps({
        "tasks": [r.uuid for r in results],
        "wants": "".join("1" if r.wants_output else "0" for r in results),
        "by_amworker": len(failed),
        "quiet_reasons": {r.uuid: r.stderr for r in failed if not r.wants_output},
    })
    return b"%s%s\n%s" % (_READY_HEAD, index.encode("ascii"), part)


def is_ready_form(raw: bytes) -> bool:
    """Whether a slice's stored value (or its head) is in :func:`encode_ready_results`' form."""
    return raw.startswith(_READY_HEAD)


def failed_by_amworker(result: TaskResult) -> bool:
    """True for a task amworker failed itself (see :func:`~worker.errors.reason`), not its script."""
    return result.exit_code != 0 and (result.stderr or "").startswith(REASON_PREFIX)


@dataclass(frozen=True)
class ReadyResults:
    """A slice's results as stored by :func:`encode_ready_results`."""

    #: The slice's task UUIDs, in its order.
    uuids: tuple[str, ...]
    #: Whether each wants its output sent back, in the same order.
    wants: tuple[bool, ...]
    #: How many of them amworker failed itself.
    by_amworker: int
    #: amworker's reason for each of those that wants no output, by task UUID.
    quiet_reasons: Mapping[str, str]
    #: The slice's members of the JSON answer's ``task_results``, as UTF-8: a
    #: view of the stored value, not a copy.
    part: memoryview

    @classmethod
    def parse(cls, raw: bytes | str) -> ReadyResults | None:
        """The stored value read, or ``None`` if it is not in this form.

        Raises :class:`~worker.contract.records.RecordError` if it has the
        mark but not the rest. The part is checked at its ends only (it
        names the first task, and closes an object), not parsed.
        """
        if isinstance(raw, str):
            if not raw.startswith(_READY_HEAD.decode()):
                return None
            raw = raw.encode("utf-8", "surrogatepass")
        if not is_ready_form(raw):
            return None
        what = "answer-ready results"
        end = raw.find(b"\n", len(_READY_HEAD))
        if end < 0:
            raise RecordError(f"{what}: expected 3 lines, got 2")
        index = records.mapping(records.loads(raw[len(_READY_HEAD):end], what), what)
        uuids = records.field(index, "tasks", list, what)
        wants = records.field(index, "wants", str, what)
        reasons = records.mapping(index.get("quiet_reasons", {}), f"{what}' quiet reasons")
        if len(wants) != len(uuids) or not all(isinstance(u, str) for u in uuids) \
                or wants.strip("01"):
            raise RecordError(f"{what}: the index's tasks and wants do not match")
        by_amworker = records.count(index, "by_amworker", what)
        if by_amworker > len(uuids) or not all(isinstance(r, str) for r in reasons.values()):
            raise RecordError(f"{what}: the index's failures do not match its tasks")
        ready = cls(uuids=tuple(uuids), wants=tuple(flag == "1" for flag in wants),
                    by_amworker=by_amworker, quiet_reasons={k: str(v) for k, v in reasons.items()},
                    part=memoryview(raw)[end + 1:])
        ready._check_ends()
        return ready

    def _check_ends(self) -> None:
        """The part is empty for no tasks, else starts with the first one's key and closes."""
        part = self.part
        if not self.uuids:
            if part:
                raise RecordError("answer-ready results: a part for no tasks")
            return
        first = json.dumps(self.uuids[0], ensure_ascii=False).encode("utf-8", "surrogatepass") + b":{"
        if bytes(part[:len(first)]) != first or bytes(part[-1:]) != b"}":
            raise RecordError("answer-ready results: the part is not the index's tasks")

    def results(self) -> list[TaskResult]:
        """The results themselves, for an answer that is not just the slices' parts joined.

        The part holds what the controller is sent, so a task that wants no
        output comes back with none (it is never sent any), apart from
        amworker's reason when amworker failed it.
        """
        what = "answer-ready results"
        members = records.mapping(records.loads(b"{" + bytes(self.part) + b"}", what), what)
        if list(members) != list(self.uuids):
            raise RecordError(f"{what}: the part's tasks are not the index's")
        stored = []
        for (uuid, entry), wanted in zip(members.items(), self.wants, strict=True):
            entry = records.mapping(entry, what)
            stderr = entry.get(STDERR_KEY, "") if wanted else self.quiet_reasons.get(uuid, "")
            stored.append({"uuid": uuid, "exit_code": entry.get(EXIT_CODE_KEY),
                           "finished_at": entry.get(FINISHED_KEY), "stdout": entry.get(STDOUT_KEY, ""),
                           "stderr": stderr, "wants_output": wanted})
        return results_from_json(stored, what)
