DELETE FROM sync_staged_inserts WHERE InternalUserID IN ({ids})
