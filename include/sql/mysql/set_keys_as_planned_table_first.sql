-- The optimistic write, a large share of the table changing: Users drives the join in primary-key
-- order. Same compare-and-set as set_keys_as_planned.sql.
UPDATE {table} u STRAIGHT_JOIN {staged} s ON s.UserID = u.UserID
SET u.{column} = s.NewValue
WHERE CAST(u.InternalUserID AS BINARY) <=> CAST(s.ExpectedInternalUserID AS BINARY)
  AND CAST(u.{column} AS BINARY) <=> CAST(s.OldValue AS BINARY)
