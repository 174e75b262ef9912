-- Step 1 of a swap-safe update: free the unique values another staged row is about to take.
UPDATE {table}
SET CognitoID = CASE WHEN s.ClearCognitoID = 1 THEN NULL ELSE {table}.CognitoID END,
    Email = CASE WHEN s.ClearEmail = 1 THEN NULL ELSE {table}.Email END
FROM sync_staged_changes AS s
WHERE s.UserID = {table}.UserID AND (s.ClearCognitoID = 1 OR s.ClearEmail = 1)
