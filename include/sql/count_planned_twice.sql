-- How many staged values (updates and inserts) equal another under the column's collation: a
-- hash pass, several times cheaper than the window of planned_twice.sql, which runs only if any do.
SELECT COUNT(v) - COUNT(DISTINCT v) FROM (
  SELECT NewValue AS v FROM {staged}
  UNION ALL
  SELECT {column} FROM sync_staged_inserts
) AS planned
