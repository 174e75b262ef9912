-- The table side of the diff: only the columns the reconciliation keys on.
SELECT UserID, InternalUserID, CognitoID, Email FROM {table}
