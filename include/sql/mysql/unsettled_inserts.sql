-- Rows to insert whose InternalUserID is there already (compared as its unique key does):
-- 'done' when the row holds exactly the planned values (our own commit, retried), else drift.
-- A locking read: on an absent id it locks the gap, so no one inserts that id until COMMIT.
SELECT n.InternalUserID,
  CASE
    WHEN u.UserID IS NULL THEN 'pending'
    WHEN CAST(u.InternalUserID AS BINARY) <=> CAST(n.InternalUserID AS BINARY)
     AND CAST(u.CognitoID AS BINARY) <=> CAST(n.CognitoID AS BINARY)
     AND CAST(u.Email AS BINARY) <=> CAST(n.Email AS BINARY)
     AND CAST(u.FirstName AS BINARY) <=> CAST(n.FirstName AS BINARY)
     AND CAST(u.LastName AS BINARY) <=> CAST(n.LastName AS BINARY) THEN 'done'
    ELSE 'appeared'
  END AS state
FROM sync_staged_inserts n LEFT JOIN {table} u ON u.InternalUserID = n.InternalUserID
HAVING state <> 'pending'
FOR UPDATE
