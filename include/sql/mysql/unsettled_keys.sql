-- The staged rows that are not exactly as the plan found them, compared byte for byte (a change
-- of case is a change): 'done' already holds the new value (our own commit, retried);
-- anything else is drift. A locking read: the current values, not the transaction's snapshot.
SELECT s.UserID, s.ExpectedInternalUserID,
  CASE
    WHEN u.UserID IS NULL THEN 'vanished'
    WHEN NOT (CAST(u.InternalUserID AS BINARY) <=> CAST(s.ExpectedInternalUserID AS BINARY)) THEN 'InternalUserID'
    WHEN CAST(u.{column} AS BINARY) <=> CAST(s.OldValue AS BINARY) THEN 'pending'
    WHEN CAST(u.{column} AS BINARY) <=> CAST(s.NewValue AS BINARY) THEN 'done'
    ELSE 'changed'
  END AS state
FROM {staged} s LEFT JOIN {table} u ON u.UserID = s.UserID
HAVING state <> 'pending'
FOR UPDATE
