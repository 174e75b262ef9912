INSERT INTO sync_staged_ids (UserID, InternalUserID) VALUES (%s, %s)
