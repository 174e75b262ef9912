-- Only rows that still have no id: a row that got one meanwhile is never touched.
UPDATE {table} u JOIN sync_staged_ids s ON s.UserID = u.UserID
SET u.InternalUserID = s.InternalUserID
WHERE u.InternalUserID IS NULL
