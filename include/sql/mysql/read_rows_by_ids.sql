-- The committed keys of some rows (%s: a JSON array of UserIDs): what the backfill re-checks just before writing.
SELECT u.UserID, u.InternalUserID, u.CognitoID, u.Email
FROM JSON_TABLE(%s, '$[*]' COLUMNS (UserID BIGINT PATH '$')) AS ids
JOIN {table} u ON u.UserID = ids.UserID
