-- See mysql/lock_staged_keys.sql. BEGIN IMMEDIATE already holds SQLite's only write lock.
SELECT COUNT(*), COALESCE(SUM(
  u.UserID IS NOT NULL
  AND u.InternalUserID IS s.ExpectedInternalUserID COLLATE BINARY
  AND u.{column} IS s.OldValue COLLATE BINARY), 0)
FROM {staged} s LEFT JOIN {table} u ON u.UserID = s.UserID
