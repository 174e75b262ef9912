INSERT INTO sync_staged_changes
  (UserID, ExpectedInternalUserID, SetCognitoID, ClearCognitoID, OldCognitoID, NewCognitoID,
   SetEmail, ClearEmail, OldEmail, NewEmail)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
