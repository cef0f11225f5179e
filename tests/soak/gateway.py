"""One gateway process of the chaos soak: the real Ledger (threads) or AsyncLedger (tasks).

``python tests/soak/gateway.py CONFIG.json`` — the config names the database, the provider,
the process's own request list and its results file. Every finished call is appended to the
results file at once (one JSON line, flushed), so a process that is SIGKILLed and started
again with the same config resumes exactly the requests it had not finished, with their own
request ids: the ledger's idempotency turns each of those into "carry on from the open
attempt" (or "here is the outcome you already recorded").

A ``LedgerUnavailable`` (the database stayed away longer than ``db_retry_s``) is what a real
gateway would retry later with the same request id; this one does so up to a bound and counts
it, so the orchestrator can tell a resumed request from a lost one.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from routing_ledger import (
    AsyncLedger,
    AttemptClosed,
    CallResult,
    Ledger,
    LedgerUnavailable,
    NoCandidate,
    OpenAICompatibleProvider,
    PreDispatchRefused,
    ProviderFailed,
)

UNAVAILABLE_RETRIES = 5


def _record_of(req: dict[str, Any], result: CallResult) -> dict[str, Any]:
    return {
        "request_id": req["request_id"],
        "kind": "result",
        "status": result.outcome_status,
        "outcome_id": result.outcome_id,
        "inference_id": result.inference_id,
        "attempts": result.attempts,
        # None when the request had already succeeded before this call (a resumed request
        # whose answer reached the ledger just before the process was killed).
        "payload": result.response.payload if result.response is not None else None,
    }


def _error_record(req: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    rec: dict[str, Any] = {"request_id": req["request_id"], "kind": type(exc).__name__}
    if isinstance(exc, ProviderFailed):
        rec.update(
            status=exc.outcome_status, outcome_id=exc.outcome_id, inference_id=exc.inference_id
        )
    elif isinstance(exc, NoCandidate):
        rec.update(status="rejected", outcome_id=exc.outcome_id)
    elif isinstance(exc, PreDispatchRefused):
        rec.update(status="failed_pre_dispatch", outcome_id=exc.outcome_id)
    elif isinstance(exc, AttemptClosed):
        rec.update(outcome_id=exc.outcome_id, inference_id=exc.inference_id)
    else:
        rec.update(error=traceback.format_exc()[-800:])
    return rec


class Results:
    """The append-only results file, safe to share between threads and tasks."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: set[str] = set()
        if path.exists():
            text = path.read_text()
            for line in text.splitlines():
                try:
                    self.done.add(json.loads(line)["request_id"])
                except (ValueError, KeyError):
                    pass  # the line a SIGKILL cut short: that request is simply redone
            if text and not text.endswith("\n"):
                with path.open("a") as out:
                    out.write("\n")
        self._out = path.open("a")
        self._lock = threading.Lock()

    def write(self, rec: dict[str, Any]) -> None:
        with self._lock:
            self._out.write(json.dumps(rec) + "\n")
            self._out.flush()


def run_sync(cfg: dict[str, Any], todo: list[dict[str, Any]], results: Results) -> None:
    providers = {
        name: OpenAICompatibleProvider(cfg["base_url"], cfg["key"], timeout_s=cfg["timeout_s"])
        for name in cfg["providers"]
    }

    with Ledger(
        cfg["db"], providers, db_retry_s=cfg["db_retry_s"], min_size=1, max_size=cfg["threads"]
    ) as ledger:

        def one(req: dict[str, Any]) -> None:
            unavailable = 0
            while True:
                try:
                    rec = _record_of(
                        req,
                        ledger.call(
                            req["agent"],
                            req["task_type"],
                            req["messages"],
                            req["max_tokens"],
                            req["request_id"],
                        ),
                    )
                except LedgerUnavailable as exc:
                    unavailable += 1
                    if unavailable < UNAVAILABLE_RETRIES:
                        time.sleep(1.0)
                        continue
                    rec = _error_record(req, exc)
                except Exception as exc:  # noqa: BLE001 - every outcome is reported
                    rec = _error_record(req, exc)
                rec["unavailable"] = unavailable
                results.write(rec)
                return

        with ThreadPoolExecutor(cfg["threads"]) as pool:
            list(pool.map(one, todo))
    for p in providers.values():
        p.close()


async def run_async(cfg: dict[str, Any], todo: list[dict[str, Any]], results: Results) -> None:
    providers = {
        name: OpenAICompatibleProvider(cfg["base_url"], cfg["key"], timeout_s=cfg["timeout_s"])
        for name in cfg["providers"]
    }
    gate = asyncio.Semaphore(cfg["threads"])
    async with AsyncLedger(
        cfg["db"], providers, db_retry_s=cfg["db_retry_s"], min_size=1, max_size=cfg["threads"]
    ) as ledger:

        async def one(req: dict[str, Any]) -> None:
            call: Callable[[], Awaitable[CallResult]] = lambda: ledger.call(  # noqa: E731
                req["agent"],
                req["task_type"],
                req["messages"],
                req["max_tokens"],
                req["request_id"],
            )
            unavailable = 0
            async with gate:
                while True:
                    try:
                        rec = _record_of(req, await call())
                    except LedgerUnavailable as exc:
                        unavailable += 1
                        if unavailable < UNAVAILABLE_RETRIES:
                            await asyncio.sleep(1.0)
                            continue
                        rec = _error_record(req, exc)
                    except Exception as exc:  # noqa: BLE001 - every outcome is reported
                        rec = _error_record(req, exc)
                    rec["unavailable"] = unavailable
                    results.write(rec)
                    return

        await asyncio.gather(*(one(req) for req in todo))
    for p in providers.values():
        await p.aclose()


def main(argv: list[str]) -> int:
    cfg = json.loads(Path(argv[1]).read_text())
    results = Results(Path(cfg["results"]))
    todo = [r for r in cfg["requests"] if r["request_id"] not in results.done]
    print(f"gateway {cfg['name']}: {len(todo)} of {len(cfg['requests'])} to do", flush=True)
    if cfg["mode"] == "async":
        asyncio.run(run_async(cfg, todo, results))
    else:
        run_sync(cfg, todo, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
