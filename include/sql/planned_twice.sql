-- Staged values that equal each other under the column's collation (updates and inserts alike):
-- neither can be written. A window instead of a self-join: MySQL cannot open a temporary table twice.
SELECT UserID, InternalUserID FROM (
  SELECT UserID, InternalUserID, COUNT(*) OVER (PARTITION BY v) AS n FROM (
    SELECT UserID, NULL AS InternalUserID, NewValue AS v FROM {staged}
    UNION ALL
    SELECT NULL, InternalUserID, {column} FROM sync_staged_inserts
  ) AS planned
  WHERE v IS NOT NULL
) AS counted
WHERE n > 1
