INSERT INTO sync_staged_inserts (InternalUserID, CognitoID, Email, FirstName, LastName)
VALUES (%s, %s, %s, %s, %s)
