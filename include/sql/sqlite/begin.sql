-- IMMEDIATE takes SQLite's write lock now: a second writer waits instead of interleaving.
BEGIN IMMEDIATE
