-- One new row; used to seed the demo's and the tests' tables.
INSERT INTO {table} (InternalUserID, CognitoID, Email, FirstName, LastName) VALUES (%s, %s, %s, %s, %s)
