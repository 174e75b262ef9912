"""When the DAGs run and how they retry: named here so that the DAG files hold only wiring."""

from __future__ import annotations

from datetime import timedelta

NIGHTLY_CRON = "30 2 * * *"  # 02:30 UTC, after the nightly restores of the lower environments
TIMEZONE = "UTC"
RESTORE_ASSET_NAME = "users_db_restored"  # the restore pipeline emits it with extra={"environment": "<name>"}
SYNCED_ASSET_NAME = "cognito_identity_synced"  # emitted per environment applied; extra: environment, counts
OWNER = "identity-platform"
MAX_APPROVAL_TIMEOUT_HOURS = 72.0  # a manual run waiting holds the DAG's only run slot
START_DATE_ISO = "2026-01-01"

# Retries are for transient faults (network, throttling beyond our own backoff, a held lock);
# refusals raise AirflowFailException and are never retried.
RETRY_ARGS = {
    "retries": 3,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=15),
}
TASK_DEFAULTS = {"owner": OWNER, **RETRY_ARGS}  # every task of both DAGs: who answers for it, how it retries

# The backfill's Cognito writes run as mapped chunks, at most this many at once per run,
# each at rate / WRITE_SLOTS: together they never exceed the rate, under any executor.
WRITE_SLOTS = 4
DEFAULT_WRITE_RATE = 20.0  # per second; AdminUpdateUserAttributes' quota is 25 per account and Region

# Extractions run one at a time across every DAG and run of the deployment (an Airflow pool
# with ONE slot, under any executor), so each may use the whole ListUsers rate it is
# configured with: the quota is per account and Region, shared by every pool there.
# Create it once: airflow pools set cognito_list_users 1 "ListUsers quota: one extraction at a time"
LIST_USERS_POOL = "cognito_list_users"
