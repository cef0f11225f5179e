-- pgTAP for the outcome_request_keys change: routing.outcome_request_keys (one row per
-- (agent_id, request_id), naming its outcome) and the two trigger functions the
-- partitioned layout uses, _claim_request_key and _follow_outcome_created_at. Nothing on
-- the unpartitioned layout: the table stays empty and no trigger calls them. Then, on the
-- layout switched by routing.partition_ledger() inside this transaction: the keys of the
-- history and of every new decision are written; a duplicate raises 23505 whoever writes
-- it; insert_decision's race branch (a key already claimed) is a skip, not an error, and
-- its flag routing.request_key_conflict does not outlive the call; a re-link moves an
-- attempt to its outcome's partition.
BEGIN;
SELECT plan(30);

----------------------------------------------------------------------------- structure

SELECT has_table('routing', 'outcome_request_keys', 'routing.outcome_request_keys exists');
SELECT columns_are('routing', 'outcome_request_keys',
    ARRAY['agent_id', 'request_id', 'outcome_id', 'outcome_created_at'], 'its columns');
SELECT results_eq(
    $$SELECT a.attname::text COLLATE "default", format_type(a.atttypid, a.atttypmod), a.attnotnull
        FROM pg_catalog.pg_attribute a
       WHERE a.attrelid = 'routing.outcome_request_keys'::regclass AND a.attnum > 0 AND NOT a.attisdropped
       ORDER BY a.attnum$$,
    $$VALUES ('agent_id', 'uuid', true), ('request_id', 'text', true), ('outcome_id', 'bigint', true),
             ('outcome_created_at', 'timestamp with time zone', true)$$,
    'types, every column NOT NULL');
SELECT col_is_pk('routing', 'outcome_request_keys', ARRAY['agent_id', 'request_id'],
    'the primary key is (agent_id, request_id)');
SELECT results_eq(
    $$SELECT c.conname::text COLLATE "default", pg_get_constraintdef(c.oid) FROM pg_catalog.pg_constraint c
       WHERE c.conrelid = 'routing.outcome_request_keys'::regclass AND c.contype = 'u' ORDER BY 1$$,
    $$VALUES ('outcome_request_keys_outcome_key', 'UNIQUE (outcome_id)'),
             ('outcome_request_keys_range_key', 'UNIQUE (outcome_created_at, outcome_id, agent_id, request_id)')$$,
    'outcome ids unique; the range key (created_at first) the outcomes'' foreign key targets');
SELECT table_privs_are('routing', 'outcome_request_keys', 'routing_readonly', ARRAY['SELECT'],
    'routing_readonly may read the keys, nothing more');
SELECT is_empty(
    $$SELECT a.grantee::regrole::text, a.privilege_type
        FROM pg_class c, aclexplode(c.relacl) a
       WHERE c.oid = 'routing.outcome_request_keys'::regclass AND a.grantee <> c.relowner
         AND NOT (a.grantee = 'routing_readonly'::regrole AND a.privilege_type = 'SELECT')$$,
    'no other grant: PUBLIC and the app role may not touch the keys');
SELECT isnt(obj_description('routing.outcome_request_keys'::regclass, 'pg_class'), NULL, 'the table carries a COMMENT');
SELECT results_eq(
    $$SELECT p.proname::text COLLATE "default", format_type(p.prorettype, NULL), p.prosecdef, p.proconfig COLLATE "default"
        FROM pg_catalog.pg_proc p
       WHERE p.oid IN ('routing._claim_request_key()'::regprocedure, 'routing._follow_outcome_created_at()'::regprocedure)
       ORDER BY 1$$,
    $$VALUES ('_claim_request_key', 'trigger', false, ARRAY['search_path=pg_catalog, routing, pg_temp']),
             ('_follow_outcome_created_at', 'trigger', false, ARRAY['search_path=pg_catalog, routing, pg_temp'])$$,
    'both are trigger functions, SECURITY INVOKER, search_path pinned, no placeholder parameter in a SET clause');
SELECT is_empty(
    $$SELECT f, r FROM unnest(ARRAY['routing._claim_request_key()', 'routing._follow_outcome_created_at()']) f,
                       unnest(ARRAY['public', 'routing_app', 'routing_ops', 'routing_judge', 'routing_readonly']) r
       WHERE has_function_privilege(r, f, 'EXECUTE')$$,
    'no role but the owner may execute them (PUBLIC revoked)');

---------------------------------------------------------------- the unpartitioned layout

INSERT INTO routing.models (slug, provider, provider_model, price_in_per_mtok_usd, price_out_per_mtok_usd, q_prior, m_allowed)
VALUES ('ork_model', 'tap', 'ork', 1, 2, 0.9, true);
INSERT INTO routing.agents (id, tenant_id, name)
VALUES ('a0000000-0000-4000-8000-0000000005f1', 'f0000000-0000-4000-8000-0000000005f1', 'request keys');
\set agent '''a0000000-0000-4000-8000-0000000005f1'''

CREATE TEMP TABLE t_d AS
SELECT g AS n, d.outcome_id, d.inference_id
  FROM generate_series(1, 3) g, routing.insert_decision('ork-' || g, :agent, 'chat', 100, 100) d;
SELECT is_empty($$SELECT * FROM routing.outcome_request_keys$$,
    'unpartitioned: the write path writes no key (the released unique key does the job)');
SELECT is_empty(
    $$SELECT t.tgname FROM pg_catalog.pg_trigger t
       WHERE t.tgfoid IN ('routing._claim_request_key()'::regprocedure, 'routing._follow_outcome_created_at()'::regprocedure)$$,
    'unpartitioned: no trigger calls the key functions');

-------------------------------------------------------------- the partitioned layout

-- The write path's deferred link checks run now: a table with pending trigger events
-- cannot be switched.
SET CONSTRAINTS ALL IMMEDIATE;
SELECT ok(routing.partition_ledger() > 0, 'fixture: partition_ledger() switches the layout in this transaction');
SET CONSTRAINTS ALL DEFERRED;

SELECT results_eq(
    $$SELECT t.tgrelid::regclass::text, t.tgname::text COLLATE "default", t.tgfoid::regproc::text
        FROM pg_catalog.pg_trigger t
       WHERE t.tgfoid IN ('routing._claim_request_key()'::regprocedure, 'routing._follow_outcome_created_at()'::regprocedure)
         AND t.tgparentid = 0
       ORDER BY 1$$,
    $$VALUES ('routing.inferences', 'follow_outcome_created_at', 'routing._follow_outcome_created_at'),
             ('routing.routing_outcomes', 'claim_request_key', 'routing._claim_request_key')$$,
    'partitioned: the switch puts claim_request_key on routing_outcomes and follow_outcome_created_at on inferences');
SELECT set_eq(
    $$SELECT agent_id, request_id, outcome_id, outcome_created_at FROM routing.outcome_request_keys$$,
    $$SELECT agent_id, request_id, id, created_at FROM routing.routing_outcomes$$,
    'the switch writes one key per outcome of the history, naming it (id, created_at)');

CREATE TEMP TABLE t_new AS SELECT * FROM routing.insert_decision('ork-new', :agent, 'chat', 100, 100);
SELECT results_eq(
    $$SELECT k.outcome_id, k.outcome_created_at FROM routing.outcome_request_keys k
       WHERE k.agent_id = 'a0000000-0000-4000-8000-0000000005f1' AND k.request_id = 'ork-new'$$,
    $$SELECT o.id, o.created_at FROM routing.routing_outcomes o WHERE o.id = (SELECT outcome_id FROM t_new)$$,
    'a new decision claims its key, naming its outcome');
SELECT is(current_setting('routing.request_key_conflict', true) IS DISTINCT FROM 'skip', true,
    'after insert_decision returns, routing.request_key_conflict is not skip in the caller''s transaction');
-- And it does not act as skip: a direct duplicate is refused, not silently dropped.
SELECT throws_ok(
    $$INSERT INTO routing.routing_outcomes (request_id, agent_id, task_type, decision_rule, outcome_status, completed_at)
      VALUES ('ork-new', 'a0000000-0000-4000-8000-0000000005f1', 'chat', 'no_candidate_enrolled', 'rejected', now())$$,
    '23505', 'duplicate key value violates unique constraint "outcome_request_keys_pkey"',
    'a second outcome for the request written directly: 23505 from the request-key trigger');
SELECT throws_ok(
    $$INSERT INTO routing.routing_outcomes (request_id, agent_id, task_type, decision_rule, outcome_status, completed_at,
                                            created_at)
      VALUES ('ork-1', 'a0000000-0000-4000-8000-0000000005f1', 'chat', 'no_candidate_enrolled', 'rejected',
              now() - interval '40 days', now() - interval '40 days')$$,
    '23505', NULL, 'also when the duplicate falls in another partition (40 days earlier)');
SELECT results_eq(
    $$SELECT outcome_id FROM routing.insert_decision('ork-new', 'a0000000-0000-4000-8000-0000000005f1', 'chat', 100, 100)$$,
    $$SELECT outcome_id FROM t_new$$,
    'a repeat of the request returns its outcome');
SELECT is((SELECT count(*)::int FROM routing.outcome_request_keys WHERE request_id = 'ork-new'), 1,
    'and writes no second key');

-- A caller's own value of the flag is put back, not cleared.
SELECT is(set_config('routing.request_key_conflict', 'caller-value', true), 'caller-value',
    'fixture: the caller sets routing.request_key_conflict for its transaction');
SELECT is((SELECT count(*)::int FROM routing.insert_decision('ork-caller', :agent, 'chat', 100, 100)), 1,
    'fixture: a decision made while the caller has set the flag');
SELECT is(current_setting('routing.request_key_conflict', true), 'caller-value',
    'insert_decision restores the caller''s value of routing.request_key_conflict');
SELECT set_config('routing.request_key_conflict', '', true);

-- The race branch. A winner commits its outcome between insert_decision's repeat probe and
-- its INSERT: simulated by a BEFORE INSERT trigger that fires before claim_request_key
-- (triggers fire in name order) and writes the winner first. The loser's INSERT meets the
-- claimed key: with insert_decision's flag the claim skips the row (no 23505), and
-- insert_decision returns the winner's outcome.
CREATE FUNCTION pg_temp.race_winner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.request_id = 'ork-race' AND NEW.decision_rule <> 'no_candidate_enrolled' THEN
        INSERT INTO routing.routing_outcomes (request_id, agent_id, tenant_id, task_type, decision_rule,
                                              outcome_status, completed_at)
        VALUES (NEW.request_id, NEW.agent_id, NEW.tenant_id, NEW.task_type, 'no_candidate_enrolled', 'rejected',
                clock_timestamp());
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER a_race_winner BEFORE INSERT ON routing.routing_outcomes
    FOR EACH ROW EXECUTE FUNCTION pg_temp.race_winner();
CREATE TEMP TABLE t_race AS SELECT * FROM routing.insert_decision('ork-race', :agent, 'chat', 100, 100);
DROP TRIGGER a_race_winner ON routing.routing_outcomes;
SELECT results_eq(
    $$SELECT r.outcome_id, r.decision_rule, r.outcome_status FROM t_race r$$,
    $$SELECT o.id, o.decision_rule, o.outcome_status FROM routing.routing_outcomes o
       WHERE o.agent_id = 'a0000000-0000-4000-8000-0000000005f1' AND o.request_id = 'ork-race'
         AND o.decision_rule = 'no_candidate_enrolled'$$,
    'the race branch: the loser returns the winner''s outcome (the rejected one), no 23505');
SELECT is((SELECT count(*)::int FROM routing.routing_outcomes WHERE request_id = 'ork-race'), 1,
    'one outcome for the raced request');
SELECT is(current_setting('routing.request_key_conflict', true) IS DISTINCT FROM 'skip', true,
    'after the race branch returns, the flag is not skip in the caller''s transaction');

-- A key whose outcome is gone (retention dropped its partition, the key not purged yet):
-- the claim skips for insert_decision, which then says so (55000), never 23505.
INSERT INTO routing.outcome_request_keys (agent_id, request_id, outcome_id, outcome_created_at)
VALUES (:agent, 'ork-dropped', 987654321, now() - interval '400 days');
SELECT throws_ok(
    $$SELECT * FROM routing.insert_decision('ork-dropped', 'a0000000-0000-4000-8000-0000000005f1', 'chat', 100, 100)$$,
    '55000', NULL, 'a request whose outcome is no longer retained: 55000, not a unique violation');

-- _follow_outcome_created_at: history's attempt with no owner (outcome_id NULL, filed
-- under its own created_at, 40 days ago) re-linked to an outcome of today follows it to
-- its partition.
INSERT INTO routing.inferences (agent_id, attempt_no, model_slug, status, completed_at, outcome_created_at,
                                created_at, input_tokens, output_tokens)
VALUES (:agent, 2, 'ork_model', 'succeeded', now() - interval '40 days', now() - interval '40 days',
        now() - interval '40 days', 1, 1);
CREATE TEMP TABLE t_orphan AS
SELECT i.id, i.tableoid::regclass::text AS part FROM routing.inferences i WHERE i.outcome_id IS NULL;
UPDATE routing.inferences SET outcome_id = (SELECT outcome_id FROM t_new) WHERE id = (SELECT id FROM t_orphan);
SELECT results_eq(
    $$SELECT i.outcome_created_at, i.tableoid::regclass::text FROM routing.inferences i WHERE i.id = (SELECT id FROM t_orphan)$$,
    $$SELECT o.created_at, replace(o.tableoid::regclass::text, 'routing_outcomes_', 'inferences_')
        FROM routing.routing_outcomes o WHERE o.id = (SELECT outcome_id FROM t_new)$$,
    're-linked, the attempt takes its outcome''s created_at as partition key and moves to its outcome''s pair');
SELECT isnt((SELECT part FROM t_orphan),
    (SELECT tableoid::regclass::text FROM routing.inferences WHERE id = (SELECT id FROM t_orphan)),
    'it left the partition it was filed in');

SELECT * FROM finish();
ROLLBACK;
