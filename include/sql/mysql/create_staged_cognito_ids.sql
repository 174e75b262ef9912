-- The rows whose CognitoID changes: the columns its write and its checks need, nothing else.
-- Temporary (private to the session; CREATE TEMPORARY does not commit) and built from the
-- table itself, so the staged values carry the column's own type, character set and collation.
CREATE TEMPORARY TABLE {staged} (PRIMARY KEY (UserID))
SELECT UserID, InternalUserID AS ExpectedInternalUserID, {column} AS OldValue, {column} AS NewValue
FROM {table}
LIMIT 0
