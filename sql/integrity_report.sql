-- The integrity report: one row per metric of routing.integrity_report, with its kind
-- (violation: must be 0; info: a gauge) and what it counts, then a one-line verdict.
--
--   psql "$DB" -f sql/integrity_report.sql                       # as of now
--   psql "$DB" -v as_of='2026-11-27 12:00+00' -f sql/integrity_report.sql
--
-- Read-only. Locks: ACCESS SHARE on the ledger tables (plain reads): blocks nobody,
-- waits for nobody but an ALTER TABLE. Every count is answered by a partial index, so it
-- takes milliseconds on millions of rows. Needs routing_ops (the function) and
-- routing_readonly (the metric descriptions).

\set ON_ERROR_STOP on
\if :{?as_of}
\else
\set as_of 'now'
\endif

SELECT r.metric, r.value, m.kind,
       CASE WHEN m.kind = 'violation' AND r.value > 0 THEN 'VIOLATION' ELSE '' END AS flag,
       m.description
  FROM routing.integrity_report(:'as_of'::timestamptz) r
  JOIN routing.integrity_metrics m USING (metric)
 ORDER BY m.ordinal;

SELECT count(*) FILTER (WHERE m.kind = 'violation' AND r.value > 0) AS violated,
       count(*) FILTER (WHERE m.kind = 'violation' AND r.value > 0) > 0 AS any_violated
  FROM routing.integrity_report(:'as_of'::timestamptz) r
  JOIN routing.integrity_metrics m USING (metric) \gset
\if :any_violated
\echo :violated 'violation metric(s) above 0: see docs/runbook.md'
\else
\echo 'no violation'
\endif
