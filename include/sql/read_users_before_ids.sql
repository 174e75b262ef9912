-- A table that has no InternalUserID column yet (before migration V1).
SELECT UserID, NULL AS InternalUserID, CognitoID, Email, FirstName, LastName FROM {table}
