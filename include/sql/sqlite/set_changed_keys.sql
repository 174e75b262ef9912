-- Step 2: the new values, one set-based statement joined on the staged rows.
UPDATE {table}
SET CognitoID = CASE WHEN s.SetCognitoID = 1 THEN s.NewCognitoID ELSE {table}.CognitoID END,
    Email = CASE WHEN s.SetEmail = 1 THEN s.NewEmail ELSE {table}.Email END
FROM sync_staged_changes AS s
WHERE s.UserID = {table}.UserID
