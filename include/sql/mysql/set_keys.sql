-- Step 2, few rows changing: the staged rows drive the join (a primary-key lookup each).
-- A plain SET of the new value on exactly the staged rows: no CASE that reads the column it
-- writes, which would make MariaDB buffer every row in a temporary table first.
UPDATE {staged} s STRAIGHT_JOIN {table} u ON u.UserID = s.UserID
SET u.{column} = s.NewValue
