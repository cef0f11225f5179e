-- Verify routing_ledger:retry_policy_stream_codes on pg

BEGIN;

DO $$
BEGIN
    ASSERT (SELECT count(*) FROM routing.retry_policy
             WHERE (error_code, then_action, give_up_status) IN
                   (('stream_interrupted', 'failover', 'failed_stream_interrupted'),
                    ('cancelled', 'give_up', 'cancelled'))) = 2,
           'the retry policy rows of stream_interrupted and cancelled are missing';
END
$$;

ROLLBACK;
