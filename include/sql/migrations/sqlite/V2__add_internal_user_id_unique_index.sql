-- SQLite form of V2.
CREATE UNIQUE INDEX InternalUserID_UNIQUE ON ${users_table} (InternalUserID);
