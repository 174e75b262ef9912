-- Lock every row about to change, before any check: until COMMIT no one else can write them,
-- so what the checks below see is what the UPDATEs will overwrite (no lost update).
-- No WHERE: every joined row is locked, whatever the isolation level.
SELECT COUNT(*) FROM {staged} s JOIN {table} u ON u.UserID = s.UserID FOR UPDATE
