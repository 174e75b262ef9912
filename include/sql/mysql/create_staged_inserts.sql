-- Rows to insert, proven absent by the plan; a plain INSERT from here fails on any duplicate key.
-- Built from the table itself: the same types, character sets and collations.
CREATE TEMPORARY TABLE sync_staged_inserts (PRIMARY KEY (InternalUserID))
SELECT InternalUserID, CognitoID, Email, FirstName, LastName
FROM {table}
LIMIT 0
