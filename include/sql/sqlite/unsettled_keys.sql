-- See mysql/unsettled_keys.sql. BEGIN IMMEDIATE already holds SQLite's only write lock.
SELECT s.UserID, s.ExpectedInternalUserID,
  CASE
    WHEN u.UserID IS NULL THEN 'vanished'
    WHEN u.InternalUserID IS NOT s.ExpectedInternalUserID COLLATE BINARY THEN 'InternalUserID'
    WHEN u.{column} IS s.OldValue COLLATE BINARY THEN 'pending'
    WHEN u.{column} IS s.NewValue COLLATE BINARY THEN 'done'
    ELSE 'changed'
  END AS state
FROM {staged} s LEFT JOIN {table} u ON u.UserID = s.UserID
WHERE state <> 'pending'
