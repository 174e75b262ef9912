-- The committed keys of some rows (?: a JSON array of UserIDs): what the backfill re-checks just before writing.
SELECT u.UserID, u.InternalUserID, u.CognitoID, u.Email
FROM json_each(?) AS ids
JOIN {table} u ON u.UserID = ids.value
