-- Revert routing_ledger:partitioned_ledger from pg
--
-- A partitioned ledger is switched back first (routing.unpartition_ledger: the recorded
-- unpartitioned layout, rows copied back, in this transaction, under its bounded lock;
-- it refuses a ledger over its p_max_rows, and then so does this revert). Then the
-- machinery goes.

BEGIN;

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '30min';

DO $$
BEGIN
    IF routing._ledger_is_partitioned() THEN
        PERFORM routing.unpartition_ledger();
    END IF;
END
$$;

DROP FUNCTION routing.purge_request_keys(int);
DROP FUNCTION routing.drop_partitions_older_than(interval, boolean, boolean, timestamptz);
DROP FUNCTION routing.create_partitions_ahead(int, timestamptz);
DROP FUNCTION routing.unpartition_ledger(bigint);
DROP FUNCTION routing.partition_ledger(bigint);
DROP FUNCTION routing._switch_ledger_layout(boolean, bigint);
DROP FUNCTION routing._record_ledger_layout();
DROP FUNCTION routing._link_partition_pair(text, boolean);
DROP FUNCTION routing._create_partition_pair(text, timestamptz, timestamptz, text, text);
DROP FUNCTION routing._partition_range(text, timestamptz);
DROP FUNCTION routing._ledger_is_partitioned();
DROP VIEW routing.ledger_partitions;
DROP TABLE routing.ledger_layout_ddl;
ALTER TABLE routing.settings DROP COLUMN partition_width;

COMMIT;
