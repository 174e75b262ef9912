-- Values of rows to insert that a row holds now, with the column's own collation. Ids only.
SELECT n.InternalUserID, o.UserID FROM sync_staged_inserts n JOIN {table} o ON o.{column} = n.{column}
