"""Rows written through the write path for the operator and judge tests (as the owner)."""

from __future__ import annotations

from typing import Any

import psycopg
from legacy_fixture import AGENT_A
from psycopg.types.json import Jsonb

REQUEST = {"messages": [{"role": "user", "content": "greet me"}]}


def succeeded(conn: psycopg.Connection[Any], answers: list[str], prefix: str) -> list[int]:
    """One request per answer text, each completed with it: the outcome ids, in order."""
    ids = []
    for i, text in enumerate(answers):
        row = conn.execute(
            "SELECT outcome_id, inference_id FROM routing.insert_decision("
            "%s::text, %s::uuid, 'chat', 100, 20, %s::jsonb)",
            (f"{prefix}-{i}", AGENT_A, Jsonb(REQUEST)),
        ).fetchone()
        assert row is not None
        payload = {"choices": [{"message": {"role": "assistant", "content": text}}]}
        conn.execute(
            "SELECT * FROM routing.complete_decision(%s::bigint, %s::jsonb, 100, 20, 300)",
            (row[1], Jsonb(payload)),
        )
        ids.append(int(row[0]))
    return ids
