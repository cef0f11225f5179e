"""A hypothesis fuzz over every public function: only documented SQLSTATEs, nothing half-written.

The contract: a bad argument gets ``22023``, an unknown id ``P0002``, an illegal transition
``55000``, an invariant a direct write would break ``23514``/``23503``/``23505`` — and "nothing
is written when a call raises". Nothing else may come back from a public function, whatever
it is passed: no ``54000`` from a text too long for its index, no ``22008`` from interval or
timestamp arithmetic, no ``22003`` from an overflow, no ``42501`` from a grant that is missing.

The functions are read from the catalog (``pg_proc`` in schema ``routing``, executable by a
``routing_*`` role, no leading underscore), so a new public function is fuzzed without anyone
listing it; the explicit tables :data:`KNOWN_V01` and :data:`KNOWN_V02` say what the package
publishes, and ``test_catalog_matches_known`` fails when the two disagree (a function
nobody documented, a signature that drifted, a released function that vanished). Each
function is called as the role that is granted it, through the same
``SELECT * FROM routing.f(%s::type, …)`` the client uses, with arguments drawn per type and,
for names that carry a vocabulary or an id, from the live database: NULLs, empty and
3,000-character strings, type edges of every integer, NaN and ±Infinity numerics, intervals
near the type's limits, timestamps at ±infinity, 294276 AD and 4713 BC, empty and large jsonb,
real ids and missing ones, real vocabulary and near misses. A call that raises must leave a
checksum of every table in the schema unchanged.

Bounded for ``make test`` (``FUZZ_EXAMPLES`` per function, deterministic); a larger, random
run: ``ROUTING_LEDGER_FUZZ_EXAMPLES=2000 pytest tests/python/test_fuzz.py``. Setting
``ROUTING_LEDGER_FUZZ_REPORT=path`` appends every finding there as one line (function,
arguments, SQLSTATE, message) instead of only failing.
"""

from __future__ import annotations

import itertools
import os
import random
import string
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from legacy_fixture import AGENT_A, AGENT_B, add_live_traffic, load_legacy_history, seed_catalog
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb

from conftest import clone_template, connect
from routing_ledger.testing.cluster import LocalCluster

Conn = psycopg.Connection[Any]

# 50 per function in make test (deterministic; each example is a call and a checksum of every
# table): CI's time on a 2-core machine. The systematic sweep of every argument's edges runs
# in full before them either way.
FUZZ_EXAMPLES = int(os.environ.get("ROUTING_LEDGER_FUZZ_EXAMPLES", "50"))
FUZZ_RANDOM = "ROUTING_LEDGER_FUZZ_EXAMPLES" in os.environ
FUZZ_REPORT = os.environ.get("ROUTING_LEDGER_FUZZ_REPORT")
FUZZ_ONLY = set(filter(None, os.environ.get("ROUTING_LEDGER_FUZZ_ONLY", "").split(",")))

#: The SQLSTATEs the contract documents for a public function.
DOCUMENTED = frozenset({"22023", "P0002", "55000", "23514", "23503", "23505"})

#: Roles in the order a call is made as: the first one granted EXECUTE.
ROLES = ("routing_app", "routing_judge", "routing_ops", "routing_admin", "routing_readonly")

#: What the package publishes: function -> its arguments (name and type, in order).
#: v0.1.0 functions must stay; v0.2 ones are allowed to be absent until their branch lands.
KNOWN_V01: dict[str, tuple[str, ...]] = {
    "choose_route": (
        "p_agent_id uuid",
        "p_task_type text",
        "p_input_tokens integer",
        "p_max_tokens integer",
        "p_as_of timestamp with time zone",
    ),
    "insert_decision": (
        "p_request_id text",
        "p_agent_id uuid",
        "p_task_type text",
        "p_input_tokens integer",
        "p_max_tokens integer",
        "p_request_payload jsonb",
    ),
    "complete_decision": (
        "p_inference_id bigint",
        "p_response_payload jsonb",
        "p_input_tokens integer",
        "p_output_tokens integer",
        "p_latency_ms integer",
    ),
    "fail_inference": (
        "p_inference_id bigint",
        "p_error_code text",
        "p_error_message text",
        "p_http_status integer",
        "p_retry_after_ms integer",
    ),
    "integrity_report": ("p_as_of timestamp with time zone",),
    "reap_stuck_inferences": ("p_older_than interval", "p_as_of timestamp with time zone"),
    "repair_orphans": ("p_window interval", "p_apply boolean"),
    "close_unmatched_orphans": (
        "p_window interval",
        "p_older_than interval",
        "p_apply boolean",
        "p_as_of timestamp with time zone",
    ),
    "rollback_repair": ("p_run_id bigint",),
    "claim_judge_batch": ("p_worker text", "p_limit integer"),
    "record_judgement": (
        "p_outcome_id bigint",
        "p_status text",
        "p_score numeric",
        "p_rationale text",
        "p_judge_model text",
    ),
}
#: v0.2 (the contract's v0.2 section and the agreed interfaces).
KNOWN_V02: dict[str, tuple[str, ...]] = {
    "insert_decision": (*KNOWN_V01["insert_decision"], "p_streamed boolean"),
    "complete_decision": (*KNOWN_V01["complete_decision"], "p_usage_source text"),
    "fail_inference": (
        *KNOWN_V01["fail_inference"],
        "p_output_tokens integer",
        "p_usage_source text",
    ),
    "mark_first_token": ("p_inference_id bigint", "p_ttft_ms integer"),
    "heartbeat_inference": ("p_inference_id bigint", "p_output_tokens integer"),
    "explain_outcome": ("p_outcome_id bigint",),
    "upsert_model": (
        "p_slug text",
        "p_provider text",
        "p_provider_model text",
        "p_price_in_per_mtok_usd numeric",
        "p_price_out_per_mtok_usd numeric",
        "p_q_prior numeric",
        "p_m_allowed boolean",
        "p_endpoint text",
        "p_enabled boolean",
        "p_expected_latency_ms integer",
        "p_agentic_index numeric",
    ),
    "set_model_enabled": ("p_slug text", "p_enabled boolean"),
    "upsert_agent": (
        "p_id uuid",
        "p_tenant_id uuid",
        "p_name text",
        "p_status text",
        "p_per_call_cap_usd numeric",
        "p_daily_cap_usd numeric",
    ),
    "set_task_floor": ("p_task_type text", "p_min_quality numeric", "p_endpoint text"),
    # Operations extensions (helper ops): what the metrics exporter reads.
    "describe_metrics": (),
    "ops_metrics": ("p_window interval", "p_as_of timestamp with time zone"),
    # The budget counters' exact check, run by the maintenance schedule (issue 12).
    "check_budget_drift": ("p_as_of timestamp with time zone",),
    # The partitioned ledger (change partitioned_ledger): upkeep and retention.
    "create_partitions_ahead": ("p_ahead integer", "p_as_of timestamp with time zone"),
    "drop_partitions_older_than": (
        "p_age interval",
        "p_apply boolean",
        "p_include_unjudged boolean",
        "p_as_of timestamp with time zone",
    ),
    "purge_request_keys": ("p_batch integer",),
    # v0.3, learned quality (issue 20): the request's draws, and what the router learned.
    "choose_route": (*KNOWN_V01["choose_route"], "p_request_id text"),
    "model_quality": ("p_as_of timestamp with time zone",),
}
#: v0.3: cost by token class (issue 18).
KNOWN_V03: dict[str, tuple[str, ...]] = {
    "complete_decision": (*KNOWN_V02["complete_decision"], "p_usage jsonb"),
    "fail_inference": (*KNOWN_V02["fail_inference"], "p_usage jsonb"),
    "set_model_price": (
        "p_slug text",
        "p_token_class text",
        "p_usd_per_mtok numeric",
        "p_effective_from timestamp with time zone",
        "p_min_input_tokens integer",
    ),
}

CATALOG = """
SELECT p.proname::text, p.oid::regprocedure::text,
       coalesce(p.proargnames[1:p.pronargs], '{}')::text[],
       array(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) t)::text[],
       r.rolname::text
  FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace
  CROSS JOIN LATERAL (
        SELECT rolname FROM unnest(%s::text[]) WITH ORDINALITY AS x(rolname, i)
         WHERE has_function_privilege(x.rolname, p.oid, 'EXECUTE')
         ORDER BY i LIMIT 1) r
 WHERE n.nspname = 'routing' AND p.prokind = 'f'
   -- Private helpers (leading underscore) are not the interface even where a view needs
   -- its reader to hold EXECUTE on one (routing._routed_past_due).
   AND p.proname NOT LIKE '\\_%%'
 ORDER BY 1, 2
"""


@dataclass(frozen=True)
class PublicFunction:
    name: str
    signature: str
    arg_names: tuple[str, ...]
    arg_types: tuple[str, ...]
    role: str

    @property
    def args(self) -> tuple[str, ...]:
        return tuple(f"{n} {t}" for n, t in zip(self.arg_names, self.arg_types, strict=True))

    def statement(self) -> sql.Composed:
        casts = [sql.SQL("%s::{}").format(sql.SQL(t)) for t in self.arg_types]
        return sql.SQL("SELECT * FROM routing.{}({})").format(
            sql.Identifier(self.name), sql.SQL(", ").join(casts)
        )


def public_functions(conn: Conn) -> list[PublicFunction]:
    roles = [
        r[0]
        for r in conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(ROLES),)
        )
    ]
    order = [r for r in ROLES if r in roles]
    return [
        PublicFunction(name, sig, tuple(names), tuple(types), role)
        for name, sig, names, types, role in conn.execute(CATALOG, (order,))
    ]


# --------------------------------------------------------------------------- strategies

INT4 = (-(2**31), 2**31 - 1)
INT8 = (-(2**63), 2**63 - 1)
HUGE = 3000
#: Incompressible, so TOAST cannot shrink it under an index's row limit (unlike "x" * 3000).
NOISE = "".join(random.Random(7).choices(string.ascii_letters + string.digits, k=HUGE))

#: Texts that are bad for almost anything: NULL, empty, blank, too long, odd characters.
TEXT_EDGES: list[str | None] = [
    None,
    "",
    " ",
    "\t\n",
    "x" * 255,
    "x" * 256,
    "x" * HUGE,
    NOISE,
    NOISE[:256],
    "é" * 300,
    "🦜" * 1200,
    "'; DROP TABLE routing.inferences; --",
    "%s %% {} \\",
]
INTERVAL_EDGES: list[str | None] = [
    None,
    "0",
    "1 microsecond",
    "-1 microsecond",
    "-1 day",
    "3 seconds",
    "1 hour",
    "100 years",
    "101 years",
    "10000 years",
    "178000000 years",
    "-178000000 years",
    "2147483647 days",
    "-2147483648 days",
    "2147483647 months",
    "9223372036854775807 microseconds",
    "-9223372036854775807 microseconds",
    "1 year -400 days",
]
TIMESTAMP_EDGES: list[str | None] = [
    None,
    "infinity",
    "-infinity",
    "294276-12-31 23:59:59.999999+00",
    "294276-01-01 00:00:00+00",
    "4713-01-01 00:00:00+00 BC",
    "4713-11-24 00:00:00+00 BC",
    "1970-01-01 00:00:00+00",
    "1969-12-31 23:59:59+00",
    "9999-12-31 00:00:00+00",
    "10000-01-01 00:00:00+00",
    "2000-01-01 00:00:00+00",
]
NUMERIC_EDGES: list[Decimal | None] = [
    None,
    Decimal("NaN"),
    Decimal("Infinity"),
    Decimal("-Infinity"),
    Decimal(0),
    Decimal(-1),
    Decimal("-0.000001"),
    Decimal("1e-300"),
    Decimal("1e300"),
    Decimal("9" * 1000),
    Decimal("5.000000000000000000001"),
]
JSON_EDGES: list[Any] = [
    None,
    Jsonb({}),
    Jsonb([]),
    Jsonb(None),
    Jsonb("text"),
    Jsonb(0),
    Jsonb({"x": "y" * 5000}),
    Jsonb({"a": [[[[{"b": None}]]]]}),
    Jsonb({"choices": [{"message": {"content": "ok"}}], "usage": {"prompt_tokens": 1}}),
]

_SAFE_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40
)


def _json_values() -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(INT8[0], INT8[1]),
        _SAFE_TEXT,
        st.floats(allow_nan=False, allow_infinity=False),
    )
    tree = st.recursive(
        leaves,
        lambda kids: st.one_of(
            st.lists(kids, max_size=4), st.dictionaries(_SAFE_TEXT, kids, max_size=4)
        ),
        max_leaves=12,
    )
    return st.one_of(st.sampled_from(JSON_EDGES), tree.map(Jsonb))


@dataclass
class World:
    """Ids and vocabularies read from the fuzzed database, for arguments that name rows."""

    inference_ids: list[int] = field(default_factory=list)
    outcome_ids: list[int] = field(default_factory=list)
    run_ids: list[int] = field(default_factory=list)
    task_types: list[str] = field(default_factory=list)
    model_slugs: list[str] = field(default_factory=list)
    agents: list[uuid.UUID] = field(default_factory=list)


ERROR_CODES = [
    "rate_limited",
    "server_error",
    "timeout",
    "connection_error",
    "bad_request",
    "auth",
    "client_error",
    "abandoned",
    "stream_interrupted",
    "cancelled",
]
JUDGE_STATUSES = ["labeled", "error", "cannot_evaluate", "unlabeled", "claimed"]


@dataclass(frozen=True)
class ArgSpace:
    """One argument: ``valid`` values that get a call past it, ``edge`` ones, and for the
    systematic sweep a ``baseline`` value and the explicit list of ``edges``."""

    valid: st.SearchStrategy[Any]
    edge: st.SearchStrategy[Any]
    baseline: Any
    edges: tuple[Any, ...]


_VALID_TEXT = _SAFE_TEXT.filter(lambda t: t.strip() != "").map(lambda t: t[:40])
_VALID_INTERVALS = ["3 seconds", "30 minutes", "1 hour", "1 day", "7 days"]


def _space(
    valid: st.SearchStrategy[Any],
    baseline: Any,
    edges: Sequence[Any],
    extra: st.SearchStrategy[Any] | None = None,
) -> ArgSpace:
    edge = st.sampled_from(list(edges))
    if extra is not None:
        edge = st.one_of(edge, edge, extra)
    return ArgSpace(valid, edge, baseline, tuple(edges))


def _int_edges(lo: int, hi: int) -> list[int | None]:
    return [None, 0, -1, 1, lo, hi, lo + 1, hi - 1]


def space_for(fn: PublicFunction, arg: str, typ: str, world: World) -> ArgSpace:
    """Valid values (real ids, real vocabulary, sane numbers) and edges for one argument."""
    ids = {
        "p_inference_id": world.inference_ids,
        "p_outcome_id": world.outcome_ids,
        "p_run_id": world.run_ids,
    }
    if arg in ids and typ == "bigint":
        known = ids[arg] or [1]
        return _space(
            st.sampled_from(known),
            known[0],
            [None, 0, -1, INT8[0], INT8[1], 2**31, max(known) + 1000],
        )
    vocabularies = {
        "p_task_type": world.task_types,
        "p_error_code": ERROR_CODES,
        "p_status": JUDGE_STATUSES[:3] if fn.name == "record_judgement" else ["active"],
        "p_usage_source": ["provider", "estimated"],
        "p_endpoint": ["chat", "embeddings"],
        "p_slug": world.model_slugs,
    }
    if arg in vocabularies and typ == "text":
        words = list(vocabularies[arg] or ["x"])
        near = [w.upper() for w in words[:2]] + [w + " " for w in words[:2]]
        return _space(st.sampled_from(words), words[0], [*TEXT_EDGES, *near], _SAFE_TEXT)
    if arg == "p_request_id":
        return _space(st.uuids().map(lambda u: f"fuzz-{u.hex[:12]}"), None, TEXT_EDGES, _SAFE_TEXT)
    if arg == "p_score":
        return _space(
            st.decimals(1, 5, places=2, allow_nan=False, allow_infinity=False),
            Decimal(4),
            [*NUMERIC_EDGES, Decimal("0.99"), Decimal("5.01")],
        )
    if arg == "p_limit":
        return _space(st.integers(1, 50), 5, [*_int_edges(*INT4), 10_000, 1_000_000])
    if arg == "p_http_status":
        return _space(
            st.sampled_from([429, 500, 503, 400, 401]), 503, [*_int_edges(*INT4), 99, 600, 200]
        )
    if typ == "uuid":
        agents = world.agents or [uuid.uuid4()]
        return _space(st.sampled_from(agents), agents[0], [None, uuid.UUID(int=0)], st.uuids())
    text_space = _space(_VALID_TEXT, "fuzz", TEXT_EDGES, _SAFE_TEXT)
    finite = st.decimals(0, 10, places=2, allow_nan=False, allow_infinity=False)
    by_type: dict[str, ArgSpace] = {
        "text": text_space,
        "integer": _space(st.integers(0, 5000), 10, _int_edges(*INT4), st.integers(*INT4)),
        "bigint": _space(st.integers(0, 5000), 10, _int_edges(*INT8), st.integers(*INT8)),
        "smallint": _space(st.integers(0, 100), 1, _int_edges(-(2**15), 2**15 - 1)),
        "numeric": _space(finite, Decimal(1), NUMERIC_EDGES, finite),
        "boolean": _space(st.booleans(), False, [None, True, False]),
        "jsonb": _space(st.just(Jsonb({"fuzz": True})), Jsonb({}), JSON_EDGES, _json_values()),
        "interval": _space(st.sampled_from(_VALID_INTERVALS), "1 hour", INTERVAL_EDGES),
        "timestamp with time zone": _space(
            st.sampled_from(["now", "2026-11-30 12:00:00+00"]), "now", TIMESTAMP_EDGES
        ),
    }
    if typ not in by_type:
        raise AssertionError(f"test_fuzz has no strategy for {fn.signature}: {arg} {typ}")
    return by_type[typ]


def arguments(spaces: Sequence[ArgSpace]) -> st.SearchStrategy[tuple[Any, ...]]:
    """A call's arguments: mostly valid, with one, two or all of them at an edge."""
    n = len(spaces)

    @st.composite
    def draw_args(draw: st.DrawFn) -> tuple[Any, ...]:
        if n == 0:
            return ()
        k = draw(st.sampled_from([0, 1, 1, 1, 1, 2, 2, n]))
        edged = draw(st.sets(st.integers(0, n - 1), min_size=min(k, n), max_size=min(k, n)))
        return tuple(draw(sp.edge if i in edged else sp.valid) for i, sp in enumerate(spaces))

    return draw_args()


# --------------------------------------------------------------------------- the world


def _build_world(conn: Conn) -> World:
    """Legacy history to repair, live traffic in every state, a judge queue — then its ids."""
    seed_catalog(conn)
    fx = load_legacy_history(conn)
    add_live_traffic(conn, fx, n=6)
    agent = str(AGENT_A)
    rows = [
        conn.execute(
            "SELECT inference_id FROM routing.insert_decision(%s::text, %s::uuid, 'chat', 50, 20)",
            (f"fuzz-open-{i}", agent),
        ).fetchone()
        for i in range(8)
    ]
    open_ids = [int(r[0]) for r in rows if r is not None and r[0] is not None]
    # One failed (a retry opened after it), one left open, the rest stay routed.
    conn.execute(
        "SELECT * FROM routing.fail_inference(%s::bigint, 'server_error', 'HTTP 503', 503)",
        (open_ids[0],),
    )
    conn.execute("SET ROLE routing_ops")
    # A repair run to name (and roll back again), and orphans left for the fuzz to repair.
    run = conn.execute("SELECT * FROM routing.repair_orphans('3 seconds'::interval, true)")
    run_ids = {r[0] for r in run.fetchall()}
    applied = conn.execute("SELECT * FROM routing.repair_orphans('3 seconds'::interval, true)")
    run_ids |= {r[0] for r in applied.fetchall()}
    conn.execute("SELECT routing.rollback_repair(%s::bigint)", (min(run_ids),))
    conn.execute("RESET ROLE")
    world = World(agents=[AGENT_A, AGENT_B, uuid.UUID(int=0)])
    world.inference_ids = [int(r[0]) for r in conn.execute("SELECT id FROM routing.inferences")]
    world.outcome_ids = [int(r[0]) for r in conn.execute("SELECT id FROM routing.routing_outcomes")]
    world.run_ids = [int(r[0]) for r in conn.execute("SELECT run_id FROM routing.repair_runs")]
    world.task_types = [r[0] for r in conn.execute("SELECT task_type FROM routing.task_floors")]
    world.model_slugs = [r[0] for r in conn.execute("SELECT slug FROM routing.models")]
    return world


def _checksum_query(conn: Conn) -> sql.Composed:
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'routing' AND c.relkind IN ('r', 'p') ORDER BY 1"
        )
    ]
    parts = [
        sql.SQL(
            "SELECT {} || ':' || count(*) || ':'"
            " || md5(coalesce(string_agg(to_jsonb(t)::text, ',' ORDER BY to_jsonb(t)::text), ''))"
            " FROM routing.{} t"
        ).format(sql.Literal(t), sql.Identifier(t))
        for t in tables
    ]
    return sql.SQL("SELECT string_agg(h, ' ' ORDER BY h) FROM ({}) s(h)").format(
        sql.SQL(" UNION ALL ").join(parts)
    )


# --------------------------------------------------------------------------- the fuzz


@dataclass
class Finding:
    function: str
    args: str
    sqlstate: str | None
    message: str

    def line(self) -> str:
        return f"{self.function} | {self.args} | {self.sqlstate} | {self.message}"


def _show(value: Any) -> str:
    if isinstance(value, Jsonb):
        value = value.obj
    text = repr(value)
    if isinstance(value, str) and len(value) > 40:
        text = f"{value[:6]!r}+…({len(value)} chars)"
    elif len(text) > 60:
        text = text[:57] + "..."
    return text


@dataclass
class Fuzzer:
    checksum: sql.Composed
    owner: Any = None
    caller: Any = None
    last: Any = None  # the checksum as last read, None when it must be read again
    calls: int = 0
    raised: int = 0
    findings: dict[tuple[str, str | None, str], Finding] = field(default_factory=dict)
    states: Counter[tuple[str, str | None]] = field(default_factory=Counter)

    def call(self, fn: PublicFunction, args: tuple[Any, ...], *, rollback: bool = False) -> None:
        """One call, committed (autocommit) or, with ``rollback``, undone whatever it did."""
        self.calls += 1
        # The tables' checksum is read again only when something may have changed it: a
        # committed success, or (for the comparison itself) a raising call.
        if self.last is None:
            self.last = self.owner.execute(self.checksum).fetchone()
        before = self.last
        if rollback:
            self.caller.execute("BEGIN")
        try:
            self.caller.execute(fn.statement(), args).fetchall()
            self.states[fn.name, "ok"] += 1
            if not rollback:
                self.last = None
            return
        except psycopg.Error as exc:
            self.raised += 1
            self.states[fn.name, exc.sqlstate] += 1
            state, message = exc.sqlstate, str(exc).splitlines()[0][:200]
        finally:
            if self.caller.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                self.caller.execute("ROLLBACK")
        after = self.last = self.owner.execute(self.checksum).fetchone()
        shown = "(" + ", ".join(_show(a) for a in args) + ")"
        if state not in DOCUMENTED:
            # One finding per (function, SQLSTATE, message shape): digits vary, the bug does not.
            shape = "".join("#" if ch.isdigit() else ch for ch in message)[:80]
            self.findings.setdefault(
                (fn.name, state, shape), Finding(fn.name, shown, state, message)
            )
        if after != before:
            self.findings.setdefault(
                (fn.name, "write", ""), Finding(fn.name, shown, state, "raised but wrote rows")
            )


def _fuzz_function(fuzzer: Fuzzer, fn: PublicFunction, world: World) -> None:
    spaces = [space_for(fn, a, t, world) for a, t in zip(fn.arg_names, fn.arg_types, strict=True)]

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=not FUZZ_RANDOM,
        suppress_health_check=list(HealthCheck),
    )
    @given(arguments(spaces))
    def run(args: tuple[Any, ...]) -> None:
        fuzzer.call(fn, args)

    # Systematically first: each argument at each of its edges, the others at their baseline
    # (a request_id baseline of None means "a fresh one per call"), once per setting of the
    # boolean arguments (a repair's dry run and its apply). Each call is rolled back, so every
    # one meets the same world and what it finds does not depend on the order.
    flags = [i for i, sp in enumerate(spaces) if sp.edges == (None, True, False)]
    for setting in itertools.product((False, True), repeat=len(flags)):
        base = [sp.baseline for sp in spaces]
        for flag, value in zip(flags, setting, strict=True):
            base[flag] = value
        for i, space in enumerate(spaces):
            for value in space.edges:
                args = [
                    f"fuzz-sweep-{uuid.uuid4().hex[:12]}" if b is None and j != i else b
                    for j, b in enumerate(base)
                ]
                args[i] = value
                fuzzer.call(fn, tuple(args), rollback=True)
    # Then hypothesis: random mixes of valid values and edges.
    run()


def test_catalog_matches_known(conn: Conn) -> None:
    """The catalog publishes what KNOWN lists, with the same arguments, to a routing_* role."""
    catalog = {fn.name: fn for fn in public_functions(conn)}
    assert len(catalog) == len({(fn.name) for fn in public_functions(conn)}), "an overload"
    known = {**KNOWN_V01, **KNOWN_V02, **KNOWN_V03}
    undocumented = sorted(set(catalog) - set(known))
    assert undocumented == [], f"public functions missing from test_fuzz.KNOWN: {undocumented}"
    drifted = {
        name: fn.args
        for name, fn in catalog.items()
        if fn.args != known[name] and fn.args != KNOWN_V01.get(name)
    }
    assert drifted == {}, "signatures differ from test_fuzz.KNOWN"
    assert sorted(set(KNOWN_V01) - set(catalog)) == [], "a released function is gone"


def test_fuzz_public_functions(cluster: LocalCluster, db: str, conn: Conn) -> None:
    """Every public function, every argument at its edges: documented SQLSTATEs only.

    The world (legacy history, live traffic in every state, a repair run) is built once and
    becomes a template; each function is fuzzed in its own clone of it, so what one function
    does to the world (a repair applied, everything reaped) cannot hide another's bug.
    """
    world = _build_world(conn)
    functions = [f for f in public_functions(conn) if not FUZZ_ONLY or f.name in FUZZ_ONLY]
    assert FUZZ_ONLY or {f.name for f in functions} >= set(KNOWN_V01)
    checksum = _checksum_query(conn)
    conn.close()
    world_db = clone_template(cluster, str(conninfo_to_dict(db)["dbname"]), prefix="rl_fuzz_world")
    fuzzer = Fuzzer(checksum)
    try:
        for fn in functions:
            name = clone_template(cluster, world_db, prefix="rl_fuzz")
            try:
                with (
                    connect(cluster.conninfo(name)) as owner,
                    connect(cluster.conninfo(name)) as caller,
                ):
                    caller.execute("SET statement_timeout = '20s'")
                    caller.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(fn.role)))
                    fuzzer.owner, fuzzer.caller, fuzzer.last = owner, caller, None
                    _fuzz_function(fuzzer, fn, world)
            finally:
                cluster.drop_database(name)
    finally:
        cluster.drop_database(world_db)
    findings = sorted(fuzzer.findings.values(), key=lambda f: (f.function, str(f.sqlstate)))
    print(
        f"\nfuzz: {fuzzer.calls} calls over {len(functions)} functions"
        f" ({fuzzer.raised} raised), {len(findings)} findings"
    )
    for (fname, state), n in sorted(fuzzer.states.items(), key=str):
        print(f"  {fname}: {state} x{n}")
    for f in findings:
        print("  " + f.line())
    if FUZZ_REPORT:
        with Path(FUZZ_REPORT).open("a") as out:
            out.writelines(f.line() + "\n" for f in findings)
    assert [f.line() for f in findings] == []


@pytest.mark.parametrize("value", [NOISE, "é" * 300])
def test_huge_request_id_is_a_bad_argument(conn: Conn, value: str) -> None:
    """The issue's example: a 3,000-character request_id is 22023, not 54000."""
    seed_catalog(conn)
    with pytest.raises(psycopg.Error) as err:
        conn.execute(
            "SELECT * FROM routing.insert_decision(%s::text, %s::uuid, 'chat', 10, 10)",
            (value, AGENT_A),
        )
    assert err.value.sqlstate == "22023"
    assert "p_request_id" in str(err.value)
