-- Plain INSERT, never ON DUPLICATE KEY UPDATE: a collision on any unique key must fail, not update another row.
INSERT INTO {table} (InternalUserID, CognitoID, Email, FirstName, LastName)
SELECT InternalUserID, CognitoID, Email, FirstName, LastName FROM sync_staged_inserts
