-- Step 2: the new values on exactly the staged rows.
UPDATE {table} SET {column} = s.NewValue FROM {staged} AS s WHERE s.UserID = {table}.UserID
