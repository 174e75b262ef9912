-- See mysql/unsettled_inserts.sql.
SELECT n.InternalUserID,
  CASE
    WHEN u.UserID IS NULL THEN 'pending'
    WHEN u.InternalUserID IS n.InternalUserID COLLATE BINARY
     AND u.CognitoID IS n.CognitoID COLLATE BINARY
     AND u.Email IS n.Email COLLATE BINARY
     AND u.FirstName IS n.FirstName COLLATE BINARY
     AND u.LastName IS n.LastName COLLATE BINARY THEN 'done'
    ELSE 'appeared'
  END AS state
FROM sync_staged_inserts n LEFT JOIN {table} u ON u.InternalUserID = n.InternalUserID
WHERE state <> 'pending'
