"""Long-running maintenance where the database cannot schedule it, and the judge worker.

:func:`run_every` is the supervised loop behind ``routing-ledger reap --every 60s``: run the
task, wait, repeat; a database that blinks is logged and retried at the next tick, and
SIGTERM or SIGINT lets the current run finish, then the loop returns (exit 0). Where pg_cron
is available, ``sql/schedule_maintenance.sql`` schedules the same work inside the database.

:func:`judge_queue` is the worker behind ``routing-ledger judge``: claim a batch
(``routing.claim_judge_batch``), score each outcome with a judge, record the verdict
(``routing.record_judgement``). Two judges come with it: :class:`CommandJudge` runs any
program (the outcome as JSON on stdin, the verdict as JSON on stdout) and :class:`ModelJudge`
asks an OpenAI-compatible chat model. A judge that fails to answer (the program exits
non-zero or times out, the model's API errs) records nothing: the claim's lease ends and the
outcome goes back to the queue. An answer that is not a verdict is recorded as ``error``.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import psycopg

from routing_ledger.ops import Judge, JudgeTask
from routing_ledger.providers import OpenAICompatibleProvider, ProviderError

__all__ = [
    "CommandJudge",
    "JudgeFailed",
    "ModelJudge",
    "Verdict",
    "WorkerStats",
    "judge_queue",
    "parse_duration",
    "run_every",
    "stop_on_signals",
]

log = logging.getLogger("routing_ledger.worker")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_MAX_RATIONALE = 2000
# The verdicts ``routing.record_judgement`` accepts: a mirror of ``routing._judge_verdicts()``,
# the one definition, which refuses anything else with 22023. Kept here so that a judge's
# answer is checked without a round trip per answer; tests/python/test_judge_worker.py
# compares the two.
_VERDICT_STATUSES = ("labeled", "error", "cannot_evaluate")


def parse_duration(text: str) -> float:
    """Seconds in ``'60s'``, ``'5m'``, ``'1h'``, ``'500ms'`` or ``'30'``; ValueError otherwise."""
    match = _DURATION.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"not a positive duration: {text!r} (e.g. 60s, 5m, 1h, 500ms)")
    return float(match.group(1)) * _UNIT_S[match.group(2) or "s"]


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event that SIGTERM and SIGINT set (instead of killing the process) while inside."""
    stop = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum: int, frame: Any) -> None:
        log.info("signal %d: stopping after the current run", signum)
        stop.set()

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_every(every_s: float, task: Callable[[], None], stop: threading.Event) -> None:
    """Run ``task`` now and every ``every_s`` seconds until ``stop`` is set.

    A lost or refused database connection is logged and the loop goes on (the next run
    connects again); any other error is the caller's: it propagates.
    """
    while not stop.is_set():
        try:
            task()
        except psycopg.OperationalError as exc:
            if exc.sqlstate is not None and not exc.sqlstate.startswith(("08", "57P")):
                raise
            log.warning("database unavailable, retrying in %gs: %s", every_s, str(exc).strip())
        stop.wait(every_s)


# --------------------------------------------------------------------------- the judge


@dataclass(frozen=True, slots=True)
class Verdict:
    """What ``routing.record_judgement`` records: ``labeled`` with a score 1..5, or ``error``
    / ``cannot_evaluate`` without one."""

    status: str
    score: Decimal | None
    rationale: str


class JudgeFailed(Exception):
    """The judge did not answer; nothing is recorded and the claim's lease runs out."""


class Scorer(Protocol):
    def __call__(self, task: JudgeTask) -> Verdict: ...


def _task_document(task: JudgeTask) -> dict[str, Any]:
    return {
        "outcome_id": task.outcome_id,
        "task_type": task.task_type,
        "model_slug": task.model_slug,
        "chosen_model_slug": task.chosen_model_slug,
        "request": task.request_payload,
        "response": task.response_payload,
    }


def verdict_from(document: Any) -> Verdict:
    """A verdict from a judge's JSON answer; an answer that is not one is an ``error``."""
    if not isinstance(document, dict):
        return Verdict(
            "error", None, f"judge answer is not a JSON object: {document!r}"[:_MAX_RATIONALE]
        )
    rationale = str(document.get("rationale") or "")[:_MAX_RATIONALE]
    score_value = document.get("score")
    status = str(document.get("status") or ("labeled" if score_value is not None else ""))
    if status not in _VERDICT_STATUSES:
        return Verdict(
            "error",
            None,
            f"judge answer has no valid status or score: {document!r}"[:_MAX_RATIONALE],
        )
    if status != "labeled":
        return Verdict(status, None, rationale or f"judge: {status}")
    try:
        score = Decimal(str(score_value))
    except InvalidOperation:
        score = Decimal("NaN")
    if not score.is_finite() or not Decimal(1) <= score <= Decimal(5):
        return Verdict(
            "error", None, f"judge score is not within 1..5: {score_value!r}"[:_MAX_RATIONALE]
        )
    return Verdict("labeled", score, rationale or "judge: labeled")


class CommandJudge:
    """Runs ``command`` (split like a shell, run without one) once per outcome.

    stdin: ``{"outcome_id", "task_type", "model_slug", "chosen_model_slug", "request",
    "response"}``; stdout: ``{"score": 1-5, "rationale": "…"}`` or ``{"status":
    "cannot_evaluate" | "error", "rationale": "…"}``. A non-zero exit or a run longer than
    ``timeout_s`` is a judge that did not answer.
    """

    def __init__(self, command: str, *, timeout_s: float = 60.0) -> None:
        self.argv = shlex.split(command)
        if not self.argv:
            raise ValueError("the judge command is empty")
        self.timeout_s = timeout_s

    def __call__(self, task: JudgeTask) -> Verdict:
        try:
            proc = subprocess.run(
                self.argv,
                input=json.dumps(_task_document(task), default=str),
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise JudgeFailed(f"judge command did not run: {exc}") from None
        if proc.returncode != 0:
            raise JudgeFailed(
                f"judge command exited {proc.returncode}: {proc.stderr.strip()[-300:]}"
            )
        try:
            document = json.loads(proc.stdout)
        except json.JSONDecodeError:
            return Verdict("error", None, f"judge output is not JSON: {proc.stdout[:300]!r}")
        return verdict_from(document)


_MODEL_JUDGE_PROMPT = (
    "You grade one answer of an AI assistant. Given the request and the answer, judge how "
    "well the answer serves the request (correct, complete, on task). Reply with one JSON "
    'object and nothing else: {"score": <integer 1 to 5, 5 best>, "rationale": "<one '
    'sentence>"}. If the answer cannot be judged, reply {"status": "cannot_evaluate", '
    '"rationale": "<why>"}.'
)
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


class ModelJudge:
    """Asks an OpenAI-compatible chat model (``provider``, ``model``) for the verdict."""

    def __init__(
        self, provider: OpenAICompatibleProvider, model: str, *, max_tokens: int = 300
    ) -> None:
        self.provider = provider
        self.model = model
        self.max_tokens = max_tokens

    def __call__(self, task: JudgeTask) -> Verdict:
        document = _task_document(task)
        messages = [
            {"role": "system", "content": _MODEL_JUDGE_PROMPT},
            {
                "role": "user",
                "content": f"Task type: {task.task_type}\n\nRequest:\n"
                f"{json.dumps(document['request'], default=str)}\n\nAnswer:\n"
                f"{json.dumps(document['response'], default=str)}",
            },
        ]
        try:
            reply = self.provider.complete(self.model, messages, self.max_tokens)
        except ProviderError as exc:
            raise JudgeFailed(f"judge model failed: {exc}") from None
        match = _JSON_OBJECT.search(reply.content or "")
        try:
            answer = json.loads(match.group(0)) if match else None
        except json.JSONDecodeError:
            answer = None
        if answer is None:
            return Verdict("error", None, f"judge reply is not a verdict: {reply.content!r}"[:300])
        return verdict_from(answer)


@dataclass
class WorkerStats:
    batches: int = 0
    recorded: dict[str, int] = field(default_factory=dict)
    not_answered: int = 0


def judge_queue(
    judge: Judge,
    scorer: Scorer,
    *,
    worker: str,
    judge_model: str,
    batch: int,
    idle_s: float,
    stop: threading.Event,
    once: bool = False,
) -> WorkerStats:
    """Claim, score and record until ``stop`` is set (or, with ``once``, the queue is empty).

    The batch in hand is finished after a stop is asked for: every claimed outcome is
    recorded or left to its lease, never half-recorded.
    """
    stats = WorkerStats()
    while not stop.is_set():
        try:
            tasks = judge.claim_batch(worker, batch)
        except psycopg.OperationalError as exc:
            if exc.sqlstate is not None and not exc.sqlstate.startswith(("08", "57P")):
                raise
            log.warning("database unavailable, retrying in %gs: %s", idle_s, str(exc).strip())
            stop.wait(idle_s)
            continue
        if not tasks:
            if once:
                break
            stop.wait(idle_s)
            continue
        stats.batches += 1
        for task in tasks:
            try:
                verdict = scorer(task)
            except JudgeFailed as exc:
                stats.not_answered += 1
                log.warning(
                    "outcome %d not judged (back in the queue after its lease): %s",
                    task.outcome_id,
                    exc,
                )
                continue
            judge.record(
                task.outcome_id, verdict.status, verdict.score, verdict.rationale, judge_model
            )
            stats.recorded[verdict.status] = stats.recorded.get(verdict.status, 0) + 1
    return stats
