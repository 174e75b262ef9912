-- Step 1 of a swap-safe update: free the unique values another staged row is about to take.
UPDATE {table} u
JOIN sync_staged_changes s ON s.UserID = u.UserID
SET u.CognitoID = CASE WHEN s.ClearCognitoID = 1 THEN NULL ELSE u.CognitoID END,
    u.Email = CASE WHEN s.ClearEmail = 1 THEN NULL ELSE u.Email END
WHERE s.ClearCognitoID = 1 OR s.ClearEmail = 1
