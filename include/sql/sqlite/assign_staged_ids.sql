-- Only rows that still have no id: a row that got one meanwhile is never touched.
UPDATE {table} SET InternalUserID = s.InternalUserID
FROM sync_staged_ids AS s
WHERE s.UserID = {table}.UserID AND {table}.InternalUserID IS NULL
