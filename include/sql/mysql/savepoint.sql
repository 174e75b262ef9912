-- Before the optimistic write: everything after it can be undone while the staging (and every
-- row lock taken so far) stays. InnoDB keeps the row locks of a rolled-back savepoint.
SAVEPOINT sync_optimistic
