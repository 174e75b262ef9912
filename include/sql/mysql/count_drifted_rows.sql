-- Rows that changed since the plan was made (or vanished): the plan no longer applies.
SELECT COUNT(*)
FROM sync_staged_changes s
LEFT JOIN {table} u ON u.UserID = s.UserID
WHERE u.UserID IS NULL
   OR NOT (u.InternalUserID <=> s.ExpectedInternalUserID)
   OR (s.SetCognitoID = 1 AND NOT (u.CognitoID <=> s.OldCognitoID))
   OR (s.SetEmail = 1 AND NOT (u.Email <=> s.OldEmail))
