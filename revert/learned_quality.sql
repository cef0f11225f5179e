-- Revert routing_ledger:learned_quality from pg
--
-- Back to route_plans' and router's state: the global quality counter bumped on every
-- write of model_task_quality, no decayed sums, no new settings. The cumulative columns
-- (judged_samples, score_sum) were kept up to date, so the older router reads them as
-- before.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '1min';

DROP TRIGGER IF EXISTS rebase_quality_sums ON routing.settings;
DROP TRIGGER IF EXISTS bump_quality_epoch ON routing.model_task_quality;
DROP TRIGGER IF EXISTS bump_route_epoch ON routing.model_task_quality;
CREATE TRIGGER bump_route_epoch BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON routing.model_task_quality
    FOR EACH STATEMENT EXECUTE FUNCTION routing._bump_route_epoch('quality');

DROP FUNCTION IF EXISTS routing.model_quality(timestamptz);
DROP FUNCTION IF EXISTS routing._rebase_quality_sums();
DROP FUNCTION IF EXISTS routing._quality_estimate(numeric, double precision, double precision, timestamptz,
                                                  timestamptz, numeric, interval);
DROP FUNCTION IF EXISTS routing._normal_quantile(double precision);
DROP FUNCTION IF EXISTS routing._quality_draw(uuid, text, text);
DROP FUNCTION IF EXISTS routing._quality_tick(timestamptz, interval);
DROP FUNCTION IF EXISTS routing._quality_decay(timestamptz, timestamptz, interval);
DROP FUNCTION IF EXISTS routing._bump_quality_epoch();
DROP TABLE IF EXISTS routing.quality_epochs;

ALTER TABLE routing.model_task_quality
    DROP COLUMN IF EXISTS label_weight,
    DROP COLUMN IF EXISTS weighted_score,
    DROP COLUMN IF EXISTS weights_at;
COMMENT ON TABLE routing.model_task_quality IS
    'Learned quality per (model, task type) from judge labels: (mean score - 1) / 4. The router uses it instead of q_prior once judged_samples >= routing.settings.min_judged_samples.';
ALTER TABLE routing.settings
    DROP COLUMN IF EXISTS quality_prior_weight,
    DROP COLUMN IF EXISTS quality_half_life,
    DROP COLUMN IF EXISTS quality_explore_share;
COMMENT ON COLUMN routing.settings.min_judged_samples IS
    'Judged samples a (model, task type) needs before its learned quality replaces q_prior in the router.';

COMMIT;
