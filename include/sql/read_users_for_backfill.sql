-- The backfill also needs the names, to create users in a lower environment's pool.
SELECT UserID, InternalUserID, CognitoID, Email, FirstName, LastName FROM {table}
