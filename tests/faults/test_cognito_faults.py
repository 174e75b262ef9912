"""Cognito misbehaving, through the fault-injecting strict layer in front of a real moto server.

What a real service does now and then: 5xx storms, connections closed without an answer,
throttling storms, a write whose answer is lost, a ListUsers page that silently comes back
without its users or without its token. Each test drives the product's own hook and
extraction (AwsBaseHook -> boto3 -> the layer -> moto) and checks what matters: every
user is listed or the run refuses, throttles are paced by the hook (never also retried by
botocore), 5xx and closed connections are retried by botocore within a bound, and nothing
reaches moto twice unless the first answer was lost.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from devtools.emulator import aws_client
from devtools.local_airflow import aws_connection, connection_variable
from devtools.population import ATTRIBUTE, PoolUser, create_pool, create_users
from devtools.strict_cognito import StrictCognitoProxy, first_page
from identity_sync import sync
from identity_sync.cognito import LIST_USERS_PAGE_SIZE, TRANSIENT_ATTEMPTS, CognitoHook, user_attributes
from identity_sync.config import Environment, Settings
from identity_sync.extract import extract_pool
from identity_sync.guards import RefusedError

CONN_ID = "aws_faults"
POOL_SIZE = 150  # three pages of 60 when listed as one slice
PAGES = -(-POOL_SIZE // LIST_USERS_PAGE_SIZE)


class Delays(list[float]):
    """The hook's injected ``sleep``: records its own backoff instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture(scope="module")
def pool_id(moto_url: str) -> str:
    """A pool of POOL_SIZE users carrying ids, created in moto directly (setup, not the code under test)."""
    client = aws_client("cognito-idp", moto_url)
    pool = create_pool(client, f"faults-{uuid.uuid4().hex[:8]}")
    users = [PoolUser(f"f{n:03d}@faults.example.com", str(uuid.uuid4()), "Fault", "Tester") for n in range(POOL_SIZE)]
    create_users(client, pool, users)
    return pool


@pytest.fixture(autouse=True)
def aws_conn(monkeypatch: pytest.MonkeyPatch, proxy: StrictCognitoProxy) -> None:
    monkeypatch.setenv(connection_variable(CONN_ID), aws_connection(proxy.url))


def environment(pool_id: str, **changes: object) -> Environment:
    env = Environment(name="faults", aws_conn_id=CONN_ID, user_pool_id=pool_id, db_conn_id="users_db_faults")
    return dataclasses.replace(env, **{"list_users_slices": 1, **changes})  # one chain: faults hit known pages


def hook(delays: Delays | None = None) -> CognitoHook:
    return CognitoHook(aws_conn_id=CONN_ID, sleep=delays if delays is not None else Delays(), seed=1)


# -- 5xx and closed connections: botocore's standard retries, bounded ------------------------------


def test_a_5xx_storm_is_ridden_out_without_our_throttle_loop(pool_id: str, proxy: StrictCognitoProxy) -> None:
    delays = Delays()
    h = hook(delays)
    proxy.inject("ListUsers", "server_error", times=TRANSIENT_ATTEMPTS - 1)  # the first page's call, all but once

    frame = extract_pool(environment(pool_id), h)

    assert len(frame) == POOL_SIZE and frame["sub"].is_unique
    assert proxy.faulted["ListUsers"] == TRANSIENT_ATTEMPTS - 1
    assert proxy.calls["ListUsers"] == PAGES  # every page reached moto once
    assert h.calls == PAGES + 1 and h.throttled == 0 and delays == []  # + DescribeUserPool; no throttle backoff
    assert frame.attrs["listing"] == {"users": POOL_SIZE, "estimate": POOL_SIZE, "passes": 1, "complete": True}


def test_a_5xx_storm_longer_than_the_bound_fails_the_call_after_exactly_that_many_requests(
    pool_id: str, proxy: StrictCognitoProxy
) -> None:
    h = hook()
    proxy.inject("DescribeUserPool", "server_error", times=TRANSIENT_ATTEMPTS + 3)

    with pytest.raises(ClientError) as excinfo:
        h.describe_user_pool(pool_id)

    assert excinfo.value.response["Error"]["Code"] == "InternalErrorException"
    assert excinfo.value.response["ResponseMetadata"]["RetryAttempts"] == TRANSIENT_ATTEMPTS - 1
    assert proxy.faulted["DescribeUserPool"] == TRANSIENT_ATTEMPTS
    assert h.calls == 1 and h.throttled == 0


def test_connections_closed_without_an_answer_are_retried(pool_id: str, proxy: StrictCognitoProxy) -> None:
    h = hook()
    proxy.inject("ListUsers", "hang_up", times=3)

    frame = extract_pool(environment(pool_id, list_users_slices=16), h)

    assert len(frame) == POOL_SIZE and frame["sub"].is_unique
    assert proxy.faulted["ListUsers"] == 3 and h.throttled == 0


# -- throttles: the hook's pacing, never botocore's --------------------------------------------------


def test_a_throttling_storm_is_paced_by_the_hook_and_never_retried_by_botocore(
    pool_id: str, proxy: StrictCognitoProxy
) -> None:
    delays = Delays()
    h = hook(delays)
    proxy.force_throttle("ListUsers", 5)

    frame = extract_pool(environment(pool_id), h)

    assert len(frame) == POOL_SIZE
    # Had botocore retried a throttle, one call of the hook would have met several and the counts would differ.
    assert h.throttled == proxy.throttled["ListUsers"] == 5
    assert len(delays) == 5  # the hook's own full-jitter backoff, once per throttle
    assert proxy.calls["ListUsers"] == PAGES


def test_throttles_and_5xx_mixed_on_a_write_reach_moto_once(pool_id: str, proxy: StrictCognitoProxy) -> None:
    h = hook()
    username = "f000@faults.example.com"
    value = str(uuid.uuid4())
    proxy.inject("AdminUpdateUserAttributes", "server_error", times=2)
    proxy.force_throttle("AdminUpdateUserAttributes", 3)
    proxy.inject("AdminUpdateUserAttributes", "hang_up", times=2)

    h.set_attribute(pool_id, username, ATTRIBUTE, value)

    assert proxy.calls["AdminUpdateUserAttributes"] == 1  # written once
    assert proxy.faulted["AdminUpdateUserAttributes"] == 4 and proxy.throttled["AdminUpdateUserAttributes"] == 3
    assert h.throttled == 3
    user = aws_client("cognito-idp", proxy.url).admin_get_user(UserPoolId=pool_id, Username=username)
    assert {a["Name"]: a["Value"] for a in user["UserAttributes"]}[ATTRIBUTE] == value


def test_a_creation_whose_answer_was_lost_is_not_created_twice(pool_id: str, proxy: StrictCognitoProxy) -> None:
    """botocore retries the lost answer; Cognito refuses the second creation: one user, and the caller is told."""
    h = hook()
    email = f"lost-{uuid.uuid4().hex[:6]}@faults.example.com"
    proxy.inject("AdminCreateUser", "lose_answer")

    with pytest.raises(ClientError) as excinfo:
        h.create_user(pool_id, email, {"email": email})

    assert excinfo.value.response["Error"]["Code"] == "UsernameExistsException"
    assert proxy.calls["AdminCreateUser"] == 2  # the lost one and the retry, refused
    listed = aws_client("cognito-idp", proxy.url).list_users(UserPoolId=pool_id, Filter=f'email = "{email}"')
    assert len(listed["Users"]) == 1
    assert len(extract_pool(environment(pool_id), h)) == POOL_SIZE + 1
    aws_client("cognito-idp", proxy.url).admin_delete_user(UserPoolId=pool_id, Username=email)


# -- short listings: found by the estimate, re-listed, or refused -----------------------------------


@pytest.mark.parametrize("fault", ["drop_users", "end_chain"])
def test_a_silently_short_page_is_found_and_the_pool_listed_again(
    pool_id: str, proxy: StrictCognitoProxy, fault: str
) -> None:
    h = hook()
    proxy.inject("ListUsers", fault)  # type: ignore[arg-type]

    frame = extract_pool(environment(pool_id, stale_cognito_ids="clear"), h)

    assert len(frame) == POOL_SIZE and frame["sub"].is_unique
    assert frame.attrs["listing"] == {"users": POOL_SIZE, "estimate": POOL_SIZE, "passes": 2, "complete": True}
    assert proxy.faulted["ListUsers"] == 1


def test_a_listing_short_in_every_pass_refuses_a_clearing_run(pool_id: str, proxy: StrictCognitoProxy) -> None:
    proxy.inject("ListUsers", "drop_users", times=2, when=first_page)  # the first page of both passes

    with pytest.raises(RefusedError, match=r"listed 90 users in 2 passes.*estimates 150.*Nothing was written"):
        extract_pool(environment(pool_id, stale_cognito_ids="clear"), hook())


def test_a_short_listing_is_recorded_not_refused_when_links_are_kept(pool_id: str, proxy: StrictCognitoProxy) -> None:
    proxy.inject("ListUsers", "drop_users", times=2, when=first_page)

    frame = extract_pool(environment(pool_id, stale_cognito_ids="keep"), hook())

    assert len(frame) == POOL_SIZE - LIST_USERS_PAGE_SIZE
    assert frame.attrs["listing"] == {"users": 90, "estimate": POOL_SIZE, "passes": 2, "complete": False}


def test_the_sync_refuses_before_writing_anything_on_a_short_listing(
    pool_id: str, proxy: StrictCognitoProxy, tmp_path: Path
) -> None:
    env = environment(pool_id, stale_cognito_ids="clear")
    settings = Settings(environments={env.name: env}, snapshot_base=f"file://{tmp_path}", source=tmp_path / "x.yaml")
    proxy.inject("ListUsers", "end_chain", times=2, when=first_page)

    with pytest.raises(RefusedError, match="not known to be complete"):
        sync.extract_step(settings, env.name, sync.RunFiles(f"file://{tmp_path}/run"))

    assert not any(tmp_path.rglob("*.parquet"))  # no snapshot, so no plan and no write can follow
    assert proxy.calls["AdminUpdateUserAttributes"] == 0


def test_every_listed_user_is_a_real_one_after_a_relist(pool_id: str, proxy: StrictCognitoProxy) -> None:
    """The merge of two passes never invents or doubles a user: exactly the pool's subs."""
    proxy.inject("ListUsers", "end_chain")
    frame = extract_pool(environment(pool_id), hook())
    direct = aws_client("cognito-idp", proxy.url)
    subs, token = [], None
    while True:
        page = direct.list_users(UserPoolId=pool_id, **({"PaginationToken": token} if token else {}))
        subs += [user_attributes(u)["sub"] for u in page["Users"]]
        token = page.get("PaginationToken")
        if not token:
            break
    assert sorted(frame["sub"]) == sorted(subs)
