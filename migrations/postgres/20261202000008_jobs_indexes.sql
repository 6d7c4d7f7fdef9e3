-- Fewer index entries move when a job changes state. A job changes state at least twice (claimed,
-- then finished), and every index that holds `state` moved an entry each time. The operator's
-- lists by kind now use an index that never changes after the insert, and the list by state reads
-- the partial indexes each state already has (queued: jobs_ready, running: jobs_leased) or the one
-- below for the states a job ends in when it did not succeed. Succeeded jobs are listed from the
-- primary key, newest first, where they are nearly every row.
DROP INDEX jobs_by_state;
DROP INDEX jobs_by_kind;
CREATE INDEX jobs_by_kind ON jobs (kind, id);
CREATE INDEX jobs_unsuccessful ON jobs (state, id) WHERE state IN ('dead', 'cancelled', 'discarded');

-- Every job leaves two dead row versions behind (the claim and the completion), and the claim
-- scans jobs_ready past the dead entries until VACUUM removes them. A busy queue makes hundreds of
-- thousands of them between two passes at the default scale factor (20% of the table), so jobs is
-- vacuumed after a fixed number of changes instead.
ALTER TABLE jobs SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 20000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 20000,
    autovacuum_analyze_scale_factor = 0.05,
    autovacuum_vacuum_cost_delay = 0
);
