-- The executemany form of staging (SQLite, or a MySQL server/client without local_infile).
INSERT INTO {staged} (UserID, ExpectedInternalUserID, OldValue, NewValue) VALUES (%s, %s, %s, %s)
