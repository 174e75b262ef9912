-- Lock every row about to change, before any check: until COMMIT no one else can write them, so
-- what the checks see is what the UPDATEs will overwrite (no lost update). No WHERE: every joined
-- row is locked, whatever the isolation level. Counts the rows exactly as the plan found them
-- (byte for byte: a change of case is a change); only when some are not does unsettled_keys.sql say which.
SELECT COUNT(*), COALESCE(SUM(
  u.UserID IS NOT NULL
  AND CAST(u.InternalUserID AS BINARY) <=> CAST(s.ExpectedInternalUserID AS BINARY)
  AND CAST(u.{column} AS BINARY) <=> CAST(s.OldValue AS BINARY)), 0)
FROM {staged} s LEFT JOIN {table} u ON u.UserID = s.UserID
FOR UPDATE
