-- The optimistic write did not land exactly as staged: undo it; the careful path decides instead.
ROLLBACK TO SAVEPOINT sync_optimistic
