import cProfile
import pstats
import time

import numpy as np
import pandas as pd
from bench.reconcile import _uuids

from identity_sync.extract import POOL_COLUMNS
from identity_sync.reconcile import plan_changes

n = 1000000
rng = np.random.default_rng(1)
ids, ds = _uuids(n, rng), _uuids(n, rng)
emails = [f"user{i:07d}@example.com" for i in range(n)]
pool = pd.DataFrame(
    {
        "sub": ds,
        "username": ds,
        "email": emails,
        "email_norm": emails,
        "internal_user_id": ids,
        "status": "C",
        "enabled": True,
        "given_name": "G",
        "family_name": "F",
    }
)[POOL_COLUMNS]
for c in POOL_COLUMNS:
    if c != "enabled":
        pool[c] = pool[c].astype("string")
table = pd.DataFrame({"UserID": np.arange(1, n + 1), "InternalUserID": ids, "CognitoID": ds, "Email": emails})
for c in ["InternalUserID", "CognitoID", "Email"]:
    table[c] = table[c].astype("string")
pr = cProfile.Profile()
pr.enable()
t = time.perf_counter()
plan = plan_changes(pool, table, "keep")
print("plan", time.perf_counter() - t, plan.metrics["rows_to_write"])
pr.disable()
st = pstats.Stats(pr)
st.sort_stats("tottime").print_stats(18)
