-- The optimistic write, few rows changing (the staged rows drive the join): set the new value only
-- where the row is still byte for byte as the plan found it. The WHERE is the drift check and the
-- UPDATE's current read locks the rows; a count short of the staged rows, or a duplicate-key error
-- (the unique indexes use the column's collation), sends the apply down the careful path. Every
-- staged new value differs from its old one byte for byte (checked before): each matched row is a
-- changed row, whether the client counts found or changed rows.
UPDATE {staged} s STRAIGHT_JOIN {table} u ON u.UserID = s.UserID
SET u.{column} = s.NewValue
WHERE CAST(u.InternalUserID AS BINARY) <=> CAST(s.ExpectedInternalUserID AS BINARY)
  AND CAST(u.{column} AS BINARY) <=> CAST(s.OldValue AS BINARY)
