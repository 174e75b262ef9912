-- One new row in a table before the migrations; used to seed the backfill's demo and tests.
INSERT INTO {table} (CognitoID, Email, FirstName, LastName) VALUES (%s, %s, %s, %s)
