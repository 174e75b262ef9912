-- Rows that changed since the plan was made (or vanished): the plan no longer applies.
SELECT COUNT(*)
FROM sync_staged_changes s
LEFT JOIN {table} u ON u.UserID = s.UserID
WHERE u.UserID IS NULL
   OR u.InternalUserID IS NOT s.ExpectedInternalUserID
   OR (s.SetCognitoID = 1 AND u.CognitoID IS NOT s.OldCognitoID)
   OR (s.SetEmail = 1 AND u.Email IS NOT s.OldEmail)
