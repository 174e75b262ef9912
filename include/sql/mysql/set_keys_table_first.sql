-- Step 2, a large share of the table changing: Users drives the join in primary-key order.
UPDATE {table} u STRAIGHT_JOIN {staged} s ON s.UserID = u.UserID
SET u.{column} = s.NewValue
