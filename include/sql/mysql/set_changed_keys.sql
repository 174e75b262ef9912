-- Step 2: the new values, one set-based statement joined on the staged rows.
UPDATE {table} u
JOIN sync_staged_changes s ON s.UserID = u.UserID
SET u.CognitoID = CASE WHEN s.SetCognitoID = 1 THEN s.NewCognitoID ELSE u.CognitoID END,
    u.Email = CASE WHEN s.SetEmail = 1 THEN s.NewEmail ELSE u.Email END
