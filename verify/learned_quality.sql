-- Verify routing_ledger:learned_quality on pg

BEGIN;

SELECT quality_prior_weight, quality_half_life, quality_explore_share FROM routing.settings WHERE false;
SELECT label_weight, weighted_score, weights_at FROM routing.model_task_quality WHERE false;
SELECT task_type, epoch FROM routing.quality_epochs WHERE false;

DO $$
BEGIN
    ASSERT routing._quality_decay('2026-01-01', '2026-01-15', '14 days') = 0.5,
           'a label''s weight must halve at one half-life';
    ASSERT abs(routing._normal_quantile(0.975) - 1.959964) < 1e-6, 'routing._normal_quantile is off';
    ASSERT (SELECT prosecdef AND proconfig IS NOT NULL FROM pg_catalog.pg_proc
             WHERE oid = 'routing.model_quality(timestamptz)'::regprocedure),
           'routing.model_quality must be SECURITY DEFINER with a pinned search_path';
END
$$;

ROLLBACK;
