-- When the breach sweep next needs to read an application: NULL is "at the next sweep" (a new application,
-- or one whose last step changed its deadlines); otherwise the due time of its earliest pending deadline,
-- before which none of its deadlines can be breached. The sweep reads only the applications due, not every
-- unsettled one every minute. The index holds the time, so finding them reads no table rows.
ALTER TABLE applications ADD COLUMN breach_check_at timestamptz;
DROP INDEX applications_unsettled;
CREATE INDEX applications_unsettled ON applications (provider_bin, id) INCLUDE (breach_check_at)
    WHERE breaches_settled_at IS NULL;
