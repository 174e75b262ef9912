"""CognitoHook and extract against a real moto server behind StrictCognitoProxy.

The hook is built from an Airflow AWS connection given as an environment variable,
so the production code path (AwsBaseHook -> boto3 client -> endpoint from the
connection extra) is the tested one. The proxy rejects ListUsers Limit > 60, counts
calls and throttles on demand, which bare moto never does.

moto keeps its state process-wide: every pool here has a unique name.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from botocore.exceptions import ClientError

from devtools.emulator import DEFAULT_REGION, aws_client
from devtools.strict_cognito import LIST_USERS_MAX_LIMIT, StrictCognitoProxy
from identity_sync import sync
from identity_sync.cognito import (
    LIST_USERS_PAGE_SIZE,
    TRANSIENT_ATTEMPTS,
    CognitoHook,
    CognitoThrottledError,
    backoff_delay,
    user_attributes,
)
from identity_sync.config import Environment, Settings
from identity_sync.extract import extract_pool, pool_frame
from identity_sync.guards import RefusedError
from identity_sync.matching import POOL_COLUMNS
from identity_sync.pool_checks import check_pool, refuse_writable_attribute

ATTRIBUTE = "custom:internal_user_id"
POOL_SIZE = 250
CONN_ID = "aws_test"


# -- the population: 250 users with every shape extract has to handle ------------------------


@dataclass(frozen=True)
class Person:
    username: str
    email: str | None
    internal_id: str | None
    given_name: str | None
    enabled: bool = True
    email_verified: bool = False


def person(i: int) -> Person:
    if i == 7:
        return Person(f"no-email-{i}", None, f"00000000-0000-4000-8000-{i:012x}", None)
    email = f"a{i}@example.com" if i % 3 == 0 else f"User{i}@Example.COM"  # mixed case: normalised by extract
    internal_id = None if i % 10 == 0 else f"00000000-0000-4000-8000-{i:012x}"
    if i == 11:
        internal_id = "ABCDEF00-0000-4000-8000-00000000000B"  # raw value kept as Cognito holds it
    given = f"Given{i}" if i % 2 else None
    return Person(f"user-{i:03d}", email, internal_id, given, enabled=i != 13, email_verified=i % 4 == 1)


PEOPLE = [person(i) for i in range(POOL_SIZE)]


@dataclass(frozen=True)
class Pool:
    id: str
    subs: dict[str, str]  # username -> sub


def create_pool(moto_url: str, people: list[Person]) -> Pool:
    """Created directly in moto (not through the proxy): setup, not the code under test."""
    client = aws_client("cognito-idp", moto_url)
    pool_id = client.create_user_pool(
        PoolName=f"it-{uuid.uuid4().hex[:10]}",
        Schema=[{"Name": "internal_user_id", "AttributeDataType": "String", "Mutable": True}],
    )["UserPool"]["Id"]
    subs = {}
    for p in people:
        attributes = [{"Name": "family_name", "Value": "Family"}]
        if p.email:
            attributes.append({"Name": "email", "Value": p.email})
            attributes.append({"Name": "email_verified", "Value": str(p.email_verified).lower()})
        if p.internal_id:
            attributes.append({"Name": ATTRIBUTE, "Value": p.internal_id})
        if p.given_name:
            attributes.append({"Name": "given_name", "Value": p.given_name})
        user = client.admin_create_user(
            UserPoolId=pool_id, Username=p.username, UserAttributes=attributes, MessageAction="SUPPRESS"
        )["User"]
        subs[p.username] = user_attributes(user)["sub"]
        if not p.enabled:
            client.admin_disable_user(UserPoolId=pool_id, Username=p.username)
    return Pool(pool_id, subs)


@pytest.fixture(scope="module")
def big_pool(moto_url: str) -> Pool:
    return create_pool(moto_url, PEOPLE)


@pytest.fixture(autouse=True)
def aws_connection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Dummy credentials only, and the Airflow connection aws_test pointing at the proxy (if any)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS"):
        monkeypatch.delenv(name, raising=False)
    if "proxy" in request.fixturenames:
        url = request.getfixturevalue("proxy").url
        conn = {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"region_name": DEFAULT_REGION, "service_config": {"cognito-idp": {"endpoint_url": url}}},
        }
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))


class Delays(list[float]):
    """An injected ``sleep``: records each delay instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def hook(**kwargs: Any) -> CognitoHook:
    kwargs.setdefault("sleep", Delays())
    return CognitoHook(aws_conn_id=CONN_ID, seed=kwargs.pop("seed", 42), **kwargs)


def environment(pool_id: str) -> Environment:
    return Environment(name="it", aws_conn_id=CONN_ID, user_pool_id=pool_id, db_conn_id="users_db_it")


# -- listing ----------------------------------------------------------------------------------


def test_list_users_returns_every_user_in_pages_of_at_most_60(big_pool: Pool, proxy: StrictCognitoProxy) -> None:
    h = hook()
    users = list(h.list_users(big_pool.id))

    assert sorted(u["Username"] for u in users) == sorted(p.username for p in PEOPLE)
    assert len({user_attributes(u)["sub"] for u in users}) == POOL_SIZE
    assert LIST_USERS_PAGE_SIZE <= LIST_USERS_MAX_LIMIT
    expected_calls = math.ceil(POOL_SIZE / LIST_USERS_MAX_LIMIT)
    assert proxy.calls["ListUsers"] == expected_calls
    assert proxy.rejected["ListUsers"] == 0
    assert proxy.throttled["ListUsers"] == 0
    assert h.calls == expected_calls and h.throttled == 0


def test_a_limit_above_60_is_rejected_without_retry(big_pool: Pool, proxy: StrictCognitoProxy) -> None:
    """The proxy really enforces the limit, and the hook does not retry a rejection."""
    delays = Delays()
    h = hook(sleep=delays)
    with pytest.raises(ClientError) as excinfo:
        h.call("ListUsers", UserPoolId=big_pool.id, Limit=61)
    assert excinfo.value.response["Error"]["Code"] == "InvalidParameterException"
    assert proxy.rejected["ListUsers"] == 1 and h.calls == 1 and delays == []


def test_filtered_listing_by_email_prefix(big_pool: Pool, proxy: StrictCognitoProxy) -> None:
    users = list(hook().list_users(big_pool.id, filter_expression='email ^= "a"'))
    expected = {p.username for p in PEOPLE if p.email and p.email.startswith("a")}
    assert len(expected) == 84
    assert {u["Username"] for u in users} == expected
    assert len(users) == len(expected)
    assert proxy.calls["ListUsers"] == math.ceil(len(expected) / LIST_USERS_PAGE_SIZE)


def test_filtered_listing_by_exact_email(big_pool: Pool, proxy: StrictCognitoProxy) -> None:
    users = list(hook().list_users(big_pool.id, filter_expression='email = "a42@example.com"'))
    assert [u["Username"] for u in users] == ["user-042"]


def test_sixteen_sub_slices_partition_the_pool(big_pool: Pool, proxy: StrictCognitoProxy) -> None:
    h = hook()
    slices = {
        digit: list(h.list_users(big_pool.id, filter_expression=f'sub ^= "{digit}"')) for digit in "0123456789abcdef"
    }

    for digit, users in slices.items():
        subs = {user_attributes(u)["sub"] for u in users}
        assert subs == {s for s in big_pool.subs.values() if s.startswith(digit)}, digit
    everyone = [u["Username"] for users in slices.values() for u in users]
    assert sorted(everyone) == sorted(big_pool.subs)  # disjoint and complete


def test_filter_matching_nobody_yields_nothing(big_pool: Pool, proxy: StrictCognitoProxy) -> None:
    assert list(hook().list_users(big_pool.id, filter_expression='email ^= "zzz"')) == []
    assert proxy.calls["ListUsers"] == 1


# -- throttling -----------------------------------------------------------------------------------


def test_throttled_listing_is_retried_with_backoff(big_pool: Pool, proxy: StrictCognitoProxy) -> None:
    delays = Delays()
    h = hook(sleep=delays, backoff_base=0.5, backoff_cap=1.5)
    proxy.force_throttle("ListUsers", 3)

    users = list(h.list_users(big_pool.id))

    assert len(users) == POOL_SIZE
    assert len({u["Username"] for u in users}) == POOL_SIZE
    assert h.throttled == 3 and proxy.throttled["ListUsers"] == 3
    assert h.calls == 3 + math.ceil(POOL_SIZE / 60)
    assert len(delays) == 3
    for attempt, delay in enumerate(delays):
        assert 0 <= delay <= min(1.5, 0.5 * 2**attempt), (attempt, delay)


def test_backoff_ceilings_grow_then_stop_at_the_cap(big_pool: Pool, proxy: StrictCognitoProxy) -> None:
    """Over many retries the delays follow min(cap, base * 2**attempt): they grow, then flatten at the cap."""
    delays = Delays()
    h = hook(sleep=delays, backoff_base=0.01, backoff_cap=0.3, max_attempts=12, seed=3)
    proxy.force_throttle("ListUsers", 11)

    assert len(list(h.list_users(big_pool.id))) == POOL_SIZE
    assert len(delays) == 11
    ceilings = [min(0.3, 0.01 * 2**attempt) for attempt in range(11)]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert max(delays[:3]) <= 0.04 < max(delays[6:])  # early waits are short, late ones long


def test_throttle_in_the_middle_of_pagination_keeps_the_token(big_pool: Pool, proxy: StrictCognitoProxy) -> None:
    h = hook()
    pages = h.list_users(big_pool.id)
    first = [next(pages) for _ in range(LIST_USERS_PAGE_SIZE + 1)]  # into the second page
    proxy.force_throttle("ListUsers", 2)
    rest = list(pages)

    usernames = [u["Username"] for u in first + rest]
    assert sorted(usernames) == sorted(p.username for p in PEOPLE)
    assert h.throttled == 2


def test_gives_up_after_max_attempts(big_pool: Pool, proxy: StrictCognitoProxy) -> None:
    delays = Delays()
    h = hook(sleep=delays, max_attempts=4)
    proxy.force_throttle("ListUsers", 4)

    with pytest.raises(CognitoThrottledError, match="ListUsers"):
        list(h.list_users(big_pool.id))

    assert h.throttled == 4 and h.calls == 4
    assert proxy.throttled["ListUsers"] == 4  # botocore retried nothing on its own
    assert proxy.calls["ListUsers"] == 0
    assert len(delays) == 3  # no sleep after the last attempt


def test_botocore_retries_only_what_is_not_a_throttle(big_pool: Pool, proxy: StrictCognitoProxy) -> None:
    """botocore's own handler makes one attempt; the transient one retries a 5xx but hands a throttle back at once."""
    h = hook(max_attempts=1)
    assert h.conn.meta.config.retries.get("total_max_attempts") == 1
    proxy.inject("DescribeUserPool", "server_error", times=TRANSIENT_ATTEMPTS - 1)
    assert h.describe_user_pool(big_pool.id)["Id"] == big_pool.id
    proxy.force_throttle("DescribeUserPool", 2)
    with pytest.raises(CognitoThrottledError):
        h.describe_user_pool(big_pool.id)
    assert proxy.throttled["DescribeUserPool"] == 1  # the second forced throttle is still pending: never retried


def test_single_attempt_means_botocore_does_not_retry_either(big_pool: Pool, proxy: StrictCognitoProxy) -> None:
    h = hook(max_attempts=1)
    proxy.force_throttle("ListUsers", 1)
    with pytest.raises(CognitoThrottledError):
        list(h.list_users(big_pool.id))
    assert proxy.throttled["ListUsers"] == 1 and proxy.calls["ListUsers"] == 0


def test_non_throttle_errors_propagate_at_once(proxy: StrictCognitoProxy) -> None:
    delays = Delays()
    h = hook(sleep=delays)
    with pytest.raises(ClientError) as excinfo:
        list(h.list_users(f"{DEFAULT_REGION}_doesNotExist1"))
    assert excinfo.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert h.calls == 1 and h.throttled == 0 and delays == []


def test_throttled_describe_user_pool_is_retried(big_pool: Pool, proxy: StrictCognitoProxy) -> None:
    h = hook()
    proxy.force_throttle("DescribeUserPool", 2)
    described = h.describe_user_pool(big_pool.id)
    assert described["Id"] == big_pool.id
    assert any(a["Name"] == ATTRIBUTE for a in described["SchemaAttributes"])
    assert h.throttled == 2


# -- backoff_delay ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("base", "cap"), [(0.1, 20.0), (1.0, 5.0), (0.05, 0.05), (2.0, 1.0)])
def test_backoff_delay_stays_within_full_jitter_bounds(base: float, cap: float) -> None:
    rng = random.Random(1234)
    for attempt in range(64):
        bound = min(cap, base * 2**attempt)
        samples = [backoff_delay(attempt, base, cap, rng) for _ in range(50)]
        assert all(0 <= s <= bound for s in samples), (attempt, bound)
        assert max(samples) > bound / 4  # jittered over the whole range, not stuck at zero


def test_backoff_delay_is_reproducible_with_a_seed() -> None:
    first = [backoff_delay(a, 0.1, 20.0, random.Random(9)) for a in range(10)]
    second = [backoff_delay(a, 0.1, 20.0, random.Random(9)) for a in range(10)]
    assert first == second


# -- extract ------------------------------------------------------------------------------------------


def expected_frame(people: list[Person], subs: dict[str, str]) -> pd.DataFrame:
    rows = [
        {
            "sub": subs[p.username],
            "username": p.username,
            "email": p.email,
            "email_norm": p.email.lower() if p.email else None,
            "internal_user_id": p.internal_id,
            "status": "FORCE_CHANGE_PASSWORD",
            "enabled": p.enabled,
            "email_verified": p.email_verified,
            "given_name": p.given_name,
            "family_name": "Family",
        }
        for p in people
    ]
    frame = pd.DataFrame.from_records(rows, columns=POOL_COLUMNS)
    for column in POOL_COLUMNS:
        frame[column] = frame[column].astype("boolean" if column in ("enabled", "email_verified") else "string")
    return frame.sort_values("username", ignore_index=True)


def test_extract_pool_builds_the_documented_frame(big_pool: Pool, proxy: StrictCognitoProxy) -> None:
    frame = extract_pool(environment(big_pool.id))  # the hook from env.aws_conn_id, as the DAG does

    assert list(frame.columns) == POOL_COLUMNS
    assert frame["enabled"].dtype == bool and frame["email_verified"].dtype == bool
    for column in POOL_COLUMNS:
        if column not in ("enabled", "email_verified"):
            assert frame[column].dtype == "string", column
    assert proxy.calls["ListUsers"] == 16  # 16 slices by sub prefix, each within one page of 60

    actual = frame.astype({"enabled": "boolean", "email_verified": "boolean"}).sort_values(
        "username", ignore_index=True
    )
    pd.testing.assert_frame_equal(actual, expected_frame(PEOPLE, big_pool.subs))


def test_extract_pool_details(big_pool: Pool, proxy: StrictCognitoProxy) -> None:
    frame = extract_pool(environment(big_pool.id), hook=hook()).set_index("username")

    assert frame.loc["user-001", "email"] == "User1@Example.COM"
    assert frame.loc["user-001", "email_norm"] == "user1@example.com"
    assert frame.loc["user-011", "internal_user_id"] == "ABCDEF00-0000-4000-8000-00000000000B"  # raw, not normalised
    assert pd.isna(frame.loc["user-010", "internal_user_id"])  # no attribute: NA
    assert frame["internal_user_id"].isna().sum() == POOL_SIZE // 10
    assert pd.isna(frame.loc["no-email-7", "email"]) and pd.isna(frame.loc["no-email-7", "email_norm"])
    assert not frame.loc["user-013", "enabled"]
    assert pd.isna(frame.loc["user-002", "given_name"])


def test_extract_pool_of_an_empty_pool(moto_url: str, proxy: StrictCognitoProxy) -> None:
    empty = create_pool(moto_url, [])
    frame = extract_pool(environment(empty.id), hook=hook())
    assert list(frame.columns) == POOL_COLUMNS
    assert frame.empty


def test_extract_pool_with_another_attribute_name(moto_url: str, proxy: StrictCognitoProxy) -> None:
    """``env.attribute`` picks the attribute; users with only the default one get NA."""
    pool = create_pool(moto_url, PEOPLE[:5])
    client = aws_client("cognito-idp", moto_url)
    client.add_custom_attributes(
        UserPoolId=pool.id, CustomAttributes=[{"Name": "iid", "AttributeDataType": "String", "Mutable": True}]
    )
    client.admin_update_user_attributes(
        UserPoolId=pool.id, Username="user-001", UserAttributes=[{"Name": "custom:iid", "Value": "other-value"}]
    )
    env = Environment(
        name="it", aws_conn_id=CONN_ID, user_pool_id=pool.id, db_conn_id="users_db_it", attribute="custom:iid"
    )
    frame = extract_pool(env, hook=hook()).set_index("username")
    assert frame.loc["user-001", "internal_user_id"] == "other-value"
    assert frame["internal_user_id"].isna().sum() == 4


@pytest.mark.parametrize(("slices", "calls"), [(1, math.ceil(POOL_SIZE / 60)), (256, 256)])
def test_extract_pool_lists_every_user_once_whatever_the_slicing(
    big_pool: Pool, proxy: StrictCognitoProxy, slices: int, calls: int
) -> None:
    env = dataclasses.replace(environment(big_pool.id), list_users_slices=slices)
    frame = extract_pool(env)
    assert len(frame) == POOL_SIZE and frame["sub"].is_unique
    assert proxy.calls["ListUsers"] == calls


def test_extract_pool_refuses_a_sub_seen_twice() -> None:
    class Repeating:
        """Two slices that both return one user: the slices overlap, so the extraction is not trusted."""

        calls = throttled = 0

        def list_users_sliced(self, user_pool_id: str, slices: int, limiter: object, collect: Any = list) -> list[Any]:
            user = {"Username": "u", "Attributes": [{"Name": "sub", "Value": "s-1"}]}
            return [collect(iter([user])), collect(iter([dict(user)]))]

        def describe_user_pool(self, user_pool_id: str) -> dict[str, Any]:
            return {"EstimatedNumberOfUsers": 1}

    with pytest.raises(RuntimeError, match="twice"):
        extract_pool(environment("us-east-2_Fake01"), hook=Repeating())  # type: ignore[arg-type]


def test_pool_frame_of_raw_records() -> None:
    records = [
        {
            "Username": "one",
            "UserStatus": "CONFIRMED",
            "Enabled": True,
            "Attributes": [
                {"Name": "sub", "Value": "s-1"},
                {"Name": "email", "Value": "  Mixed.Case@Example.ORG "},
                {"Name": ATTRIBUTE, "Value": "not-a-uuid"},
                {"Name": "email_verified", "Value": "true"},
            ],
        },
        {"Username": "two", "Attributes": [{"Name": "sub", "Value": "s-2"}, {"Name": "email", "Value": ""}]},
    ]
    frame = pool_frame(records, ATTRIBUTE)
    assert list(frame.columns) == POOL_COLUMNS
    assert frame["email_norm"].tolist()[0] == "mixed.case@example.org"
    assert pd.isna(frame["email_norm"].tolist()[1])  # blank e-mail is missing
    assert frame["internal_user_id"].tolist()[0] == "not-a-uuid"  # raw: reconcile judges it
    assert pd.isna(frame["internal_user_id"].tolist()[1])
    assert frame["enabled"].tolist() == [True, True]
    assert frame["email_verified"].tolist() == [True, False]  # "true" only; absent is not verified
    assert pd.isna(frame["status"].tolist()[1])


def test_pool_frame_of_no_users() -> None:
    frame = pool_frame([], ATTRIBUTE)
    assert list(frame.columns) == POOL_COLUMNS and frame.empty


# -- the pool's own safety: the attribute exists, and no app client can write it ----------------------


def add_client(moto_url: str, pool_id: str, name: str, write: list[str] | None = None) -> str:
    extra = {"WriteAttributes": write} if write is not None else {}
    client = aws_client("cognito-idp", moto_url).create_user_pool_client(UserPoolId=pool_id, ClientName=name, **extra)
    return client["UserPoolClient"]["ClientId"]


def test_a_pool_whose_clients_cannot_write_the_attribute_passes(moto_url: str, proxy: StrictCognitoProxy) -> None:
    pool = create_pool(moto_url, [])
    add_client(moto_url, pool.id, "web")  # no list: standard attributes only
    add_client(moto_url, pool.id, "mobile", ["email", "given_name", "custom:other"])

    check_pool(environment(pool.id), hook())

    assert proxy.calls["ListUserPoolClients"] == 1 and proxy.calls["DescribeUserPoolClient"] == 2


def test_a_client_that_can_write_the_attribute_is_refused_by_id_and_name(
    moto_url: str, proxy: StrictCognitoProxy
) -> None:
    pool = create_pool(moto_url, [])
    add_client(moto_url, pool.id, "web")
    writer = add_client(moto_url, pool.id, "admin-portal", ["email", ATTRIBUTE])

    with pytest.raises(RefusedError) as excinfo:
        check_pool(environment(pool.id), hook())

    message = str(excinfo.value)
    assert f"{writer} (admin-portal)" in message and ATTRIBUTE in message and "Nothing was written" in message
    assert "web" not in message


def test_every_page_of_app_clients_is_checked(moto_url: str, proxy: StrictCognitoProxy) -> None:
    pool = create_pool(moto_url, [])
    for n in range(61):  # one more than a page
        add_client(moto_url, pool.id, f"client-{n:02d}")
    writer = add_client(moto_url, pool.id, "last", [ATTRIBUTE])

    with pytest.raises(RefusedError, match=f"{writer} \\(last\\)"):
        refuse_writable_attribute(environment(pool.id), hook())

    assert proxy.calls["ListUserPoolClients"] == 2 and proxy.calls["DescribeUserPoolClient"] == 62


def test_a_misspelt_attribute_is_refused_naming_it_and_the_pool_s_own(moto_url: str, proxy: StrictCognitoProxy) -> None:
    pool = create_pool(moto_url, [])
    env = dataclasses.replace(environment(pool.id), attribute="custom:internal_userid")

    with pytest.raises(RefusedError) as excinfo:
        check_pool(env, hook())

    message = str(excinfo.value)
    assert "no attribute 'custom:internal_userid'" in message
    assert f"its custom attributes: {ATTRIBUTE}" in message
    assert proxy.calls["ListUserPoolClients"] == 0  # refused on the schema, before anything else


def test_the_sync_checks_the_pool_before_listing_a_user(
    moto_url: str, proxy: StrictCognitoProxy, tmp_path: Path
) -> None:
    pool = create_pool(moto_url, PEOPLE[:3])
    add_client(moto_url, pool.id, "web", [ATTRIBUTE])
    env = environment(pool.id)
    settings = Settings(environments={env.name: env}, snapshot_base=f"file://{tmp_path}", source=tmp_path / "x.yaml")

    with pytest.raises(RefusedError, match="can write"):
        sync.extract_step(settings, env.name, sync.RunFiles(f"file://{tmp_path}/run"))

    assert proxy.calls["ListUsers"] == 0
    assert not any(tmp_path.rglob("*.parquet"))
