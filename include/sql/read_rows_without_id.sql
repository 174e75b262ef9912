SELECT UserID FROM {table} WHERE InternalUserID IS NULL
