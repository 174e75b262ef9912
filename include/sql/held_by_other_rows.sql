-- Staged new values another row holds now, compared by the server with the column's own
-- collation (its unique index's rule): (row that wants it, row that holds it). Ids only.
SELECT s.UserID, o.UserID FROM {staged} s JOIN {table} o ON o.{column} = s.NewValue WHERE o.UserID <> s.UserID
