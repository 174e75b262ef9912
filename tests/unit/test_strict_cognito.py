"""StrictCognitoProxy enforces the AWS rules that bare moto lets through."""

from __future__ import annotations

import http.client
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from devtools.emulator import aws_client
from devtools.strict_cognito import StrictCognitoProxy

NO_RETRY = Config(retries={"mode": "standard", "total_max_attempts": 1})


@pytest.fixture(autouse=True)
def _dummy_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Belt and braces: no real credentials, profiles or retry settings leak in."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    for name in (
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_RETRY_MODE",
        "AWS_MAX_ATTEMPTS",
    ):
        monkeypatch.delenv(name, raising=False)


def cognito(url: str, config: Config = NO_RETRY) -> Any:
    return aws_client("cognito-idp", url, config=config)


def create_pool(moto_url: str, schema: list[dict[str, Any]] | None = None) -> str:
    """Create a pool directly in moto (moto state is shared, so names are unique)."""
    kwargs: dict[str, Any] = {"PoolName": f"pool-{uuid.uuid4().hex[:8]}"}
    if schema:
        kwargs["Schema"] = schema
    pool = cognito(moto_url).create_user_pool(**kwargs)
    return pool["UserPool"]["Id"]


def custom(name: str, *, mutable: bool) -> dict[str, Any]:
    return {"Name": name, "AttributeDataType": "String", "Mutable": mutable}


def error_code(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    return excinfo.value.response["Error"]["Code"]


# -- ListUsers Limit ------------------------------------------------------------


def test_limit_above_60_rejected_by_proxy_but_accepted_by_moto(moto_url: str, proxy: StrictCognitoProxy) -> None:
    pool_id = create_pool(moto_url)
    cognito(moto_url).list_users(UserPoolId=pool_id, Limit=61)  # moto: fine

    client = cognito(proxy.url)
    with pytest.raises(client.exceptions.InvalidParameterException) as excinfo:
        client.list_users(UserPoolId=pool_id, Limit=61)

    assert error_code(excinfo) == "InvalidParameterException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "61" in excinfo.value.response["Error"]["Message"]
    assert proxy.rejected["ListUsers"] == 1
    assert proxy.calls["ListUsers"] == 0


def test_limit_60_is_forwarded(moto_url: str, proxy: StrictCognitoProxy) -> None:
    pool_id = create_pool(moto_url)
    cognito(moto_url).admin_create_user(UserPoolId=pool_id, Username="alice")

    users = cognito(proxy.url).list_users(UserPoolId=pool_id, Limit=60)["Users"]

    assert [u["Username"] for u in users] == ["alice"]
    assert proxy.calls["ListUsers"] == 1
    assert not proxy.rejected


def post_raw(url: str, operation: str, payload: dict[str, Any]) -> tuple[int, http.client.HTTPMessage, dict[str, Any]]:
    """Bypass botocore, whose client-side validation blocks a negative Limit."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    try:
        conn.request(
            "POST",
            "/",
            body=json.dumps(payload),
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": f"AWSCognitoIdentityProviderService.{operation}",
            },
        )
        resp = conn.getresponse()
        return resp.status, resp.headers, json.loads(resp.read())
    finally:
        conn.close()


def test_negative_limit_answers_aws_json_error(proxy: StrictCognitoProxy) -> None:
    status, headers, body = post_raw(proxy.url, "ListUsers", {"UserPoolId": "us-east-2_x", "Limit": -1})

    assert status == 400
    assert headers["Content-Type"] == "application/x-amz-json-1.1"
    assert headers["x-amzn-ErrorType"] == "InvalidParameterException"
    assert body["__type"] == "InvalidParameterException"
    assert "-1" in body["message"]


# -- throttling -----------------------------------------------------------------


def max_admitted_per_second(proxy: StrictCognitoProxy, operation: str) -> int:
    """Largest number of admitted calls inside any half-open one-second window."""
    times = sorted(e.at for e in proxy.events if e.operation == operation and e.outcome != "throttled")
    return max(
        (sum(1 for t in times if start <= t < start + 1.0) for start in times),
        default=0,
    )


def test_quota_throttles_a_burst(moto_url: str) -> None:
    pool_id = create_pool(moto_url)
    with StrictCognitoProxy(moto_url, quotas={"ListUsers": 5}) as proxy:
        client = cognito(proxy.url)
        outcomes = []
        for _ in range(20):
            try:
                client.list_users(UserPoolId=pool_id)
                outcomes.append("ok")
            except client.exceptions.TooManyRequestsException as exc:
                assert exc.response["Error"]["Code"] == "TooManyRequestsException"
                assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 400
                outcomes.append("throttled")

    assert "throttled" in outcomes
    assert outcomes[:5] == ["ok"] * 5
    assert proxy.calls["ListUsers"] == outcomes.count("ok")
    assert proxy.throttled["ListUsers"] == outcomes.count("throttled")
    assert max_admitted_per_second(proxy, "ListUsers") <= 5


def test_quota_holds_under_concurrent_callers(moto_url: str) -> None:
    pool_id = create_pool(moto_url)
    with StrictCognitoProxy(moto_url, quotas={"ListUsers": 10}) as proxy:
        client = cognito(proxy.url)  # botocore clients are thread-safe

        def call(_: int) -> bool:
            try:
                client.list_users(UserPoolId=pool_id)
            except client.exceptions.TooManyRequestsException:
                return False
            return True

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(call, range(40)))

    assert proxy.calls["ListUsers"] == results.count(True)
    assert proxy.throttled["ListUsers"] == results.count(False)
    assert proxy.calls["ListUsers"] >= 10
    assert max_admitted_per_second(proxy, "ListUsers") <= 10


def test_quota_window_slides(moto_url: str) -> None:
    pool_id = create_pool(moto_url)
    with StrictCognitoProxy(moto_url, quotas={"ListUsers": 2}) as proxy:
        client = cognito(proxy.url)
        client.list_users(UserPoolId=pool_id)
        client.list_users(UserPoolId=pool_id)
        with pytest.raises(client.exceptions.TooManyRequestsException):
            client.list_users(UserPoolId=pool_id)
        time.sleep(1.05)
        client.list_users(UserPoolId=pool_id)  # the first two have left the window

    assert proxy.calls["ListUsers"] == 3
    assert proxy.throttled["ListUsers"] == 1


def test_force_throttle_fails_exactly_n_calls(moto_url: str, proxy: StrictCognitoProxy) -> None:
    pool_id = create_pool(moto_url)
    client = cognito(proxy.url)
    proxy.force_throttle("ListUsers", 3)

    failures = 0
    for _ in range(5):
        try:
            client.list_users(UserPoolId=pool_id)
        except client.exceptions.TooManyRequestsException:
            failures += 1

    assert failures == 3
    assert proxy.throttled["ListUsers"] == 3
    assert proxy.calls["ListUsers"] == 2


def test_throttle_next_constructor_argument(moto_url: str) -> None:
    pool_id = create_pool(moto_url)
    with StrictCognitoProxy(moto_url, throttle_next={"ListUsers": 1}) as proxy:
        client = cognito(proxy.url)
        with pytest.raises(client.exceptions.TooManyRequestsException):
            client.list_users(UserPoolId=pool_id)
        client.list_users(UserPoolId=pool_id)


def test_only_standard_retry_mode_retries_cognito_throttling(moto_url: str, proxy: StrictCognitoProxy) -> None:
    """botocore's legacy mode retries only HTTP 429 here; Cognito throttles with 400."""
    pool_id = create_pool(moto_url)
    legacy = cognito(proxy.url, Config(retries={"mode": "legacy", "max_attempts": 4}))
    standard = cognito(proxy.url, Config(retries={"mode": "standard", "max_attempts": 4}))

    proxy.force_throttle("ListUsers", 1)
    with pytest.raises(legacy.exceptions.TooManyRequestsException):
        legacy.list_users(UserPoolId=pool_id)

    proxy.force_throttle("ListUsers", 1)
    standard.list_users(UserPoolId=pool_id)  # retried after a backoff of <= 1 s

    assert proxy.throttled["ListUsers"] == 2
    assert proxy.calls["ListUsers"] == 1


# -- custom attributes ----------------------------------------------------------


def test_immutable_custom_attribute_only_settable_at_creation(moto_url: str, proxy: StrictCognitoProxy) -> None:
    pool_id = create_pool(moto_url, [custom("tenant", mutable=False), custom("team", mutable=True)])
    client = cognito(proxy.url)
    client.admin_create_user(
        UserPoolId=pool_id,
        Username="alice",
        UserAttributes=[{"Name": "custom:tenant", "Value": "t1"}],
    )

    with pytest.raises(client.exceptions.InvalidParameterException) as excinfo:
        client.admin_update_user_attributes(
            UserPoolId=pool_id,
            Username="alice",
            UserAttributes=[{"Name": "custom:tenant", "Value": "t2"}],
        )
    assert "custom:tenant: Attribute cannot be updated." in str(excinfo.value)

    client.admin_update_user_attributes(
        UserPoolId=pool_id,
        Username="alice",
        UserAttributes=[{"Name": "custom:team", "Value": "blue"}],
    )

    # Bare moto lets the immutable write through: the gap the proxy closes.
    cognito(moto_url).admin_update_user_attributes(
        UserPoolId=pool_id,
        Username="alice",
        UserAttributes=[{"Name": "custom:tenant", "Value": "t2"}],
    )
    attrs = client.admin_get_user(UserPoolId=pool_id, Username="alice")["UserAttributes"]
    values = {a["Name"]: a["Value"] for a in attrs}
    assert values["custom:tenant"] == "t2"
    assert values["custom:team"] == "blue"
    assert proxy.rejected["AdminUpdateUserAttributes"] == 1
    assert proxy.calls["AdminUpdateUserAttributes"] == 1


def test_unknown_custom_attribute_rejected(moto_url: str, proxy: StrictCognitoProxy) -> None:
    pool_id = create_pool(moto_url)
    client = cognito(proxy.url)
    unknown = [{"Name": "custom:nope", "Value": "x"}]

    with pytest.raises(client.exceptions.InvalidParameterException) as excinfo:
        client.admin_create_user(UserPoolId=pool_id, Username="bob", UserAttributes=unknown)
    assert "does not exist in the schema" in str(excinfo.value)

    client.admin_create_user(UserPoolId=pool_id, Username="bob")
    with pytest.raises(client.exceptions.InvalidParameterException):
        client.admin_update_user_attributes(UserPoolId=pool_id, Username="bob", UserAttributes=unknown)

    # Bare moto accepts it.
    cognito(moto_url).admin_update_user_attributes(UserPoolId=pool_id, Username="bob", UserAttributes=unknown)
    assert proxy.rejected == {"AdminCreateUser": 1, "AdminUpdateUserAttributes": 1}


def test_add_custom_attributes_through_proxy_refreshes_schema(moto_url: str, proxy: StrictCognitoProxy) -> None:
    pool_id = create_pool(moto_url)
    client = cognito(proxy.url)
    client.admin_create_user(UserPoolId=pool_id, Username="carol")
    write = [{"Name": "custom:internal_user_id", "Value": str(uuid.uuid4())}]

    with pytest.raises(client.exceptions.InvalidParameterException):
        client.admin_update_user_attributes(
            UserPoolId=pool_id, Username="carol", UserAttributes=write
        )  # also caches the schema without the attribute

    client.add_custom_attributes(UserPoolId=pool_id, CustomAttributes=[custom("internal_user_id", mutable=True)])
    client.admin_update_user_attributes(UserPoolId=pool_id, Username="carol", UserAttributes=write)


# -- injected faults ---------------------------------------------------------------


def add_users(moto_url: str, pool_id: str, count: int) -> None:
    client = cognito(moto_url)
    for n in range(count):
        client.admin_create_user(UserPoolId=pool_id, Username=f"user-{n:03d}", MessageAction="SUPPRESS")


def test_server_error_answers_500_and_never_reaches_moto(moto_url: str, proxy: StrictCognitoProxy) -> None:
    pool_id = create_pool(moto_url)
    proxy.inject("AdminCreateUser", "server_error")
    client = cognito(proxy.url)

    with pytest.raises(ClientError) as excinfo:
        client.admin_create_user(UserPoolId=pool_id, Username="alice", MessageAction="SUPPRESS")

    assert error_code(excinfo) == "InternalErrorException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert cognito(moto_url).list_users(UserPoolId=pool_id)["Users"] == []
    assert proxy.faulted["AdminCreateUser"] == 1 and proxy.calls["AdminCreateUser"] == 0
    client.admin_create_user(UserPoolId=pool_id, Username="alice", MessageAction="SUPPRESS")  # one fault only
    assert proxy.calls["AdminCreateUser"] == 1


def test_hang_up_closes_the_connection_without_an_answer(moto_url: str, proxy: StrictCognitoProxy) -> None:
    pool_id = create_pool(moto_url)
    proxy.inject("ListUsers", "hang_up")

    with pytest.raises(ConnectionClosedError):
        cognito(proxy.url).list_users(UserPoolId=pool_id)

    assert proxy.faulted["ListUsers"] == 1 and proxy.calls["ListUsers"] == 0


def test_lose_answer_writes_then_answers_500(moto_url: str, proxy: StrictCognitoProxy) -> None:
    pool_id = create_pool(moto_url)
    proxy.inject("AdminCreateUser", "lose_answer")

    with pytest.raises(ClientError) as excinfo:
        cognito(proxy.url).admin_create_user(UserPoolId=pool_id, Username="bob", MessageAction="SUPPRESS")

    assert error_code(excinfo) == "InternalErrorException"
    assert [u["Username"] for u in cognito(moto_url).list_users(UserPoolId=pool_id)["Users"]] == ["bob"]
    assert proxy.faulted["AdminCreateUser"] == 1 and proxy.calls["AdminCreateUser"] == 1


def test_drop_users_keeps_the_token_and_end_chain_drops_it(moto_url: str, proxy: StrictCognitoProxy) -> None:
    pool_id = create_pool(moto_url)
    add_users(moto_url, pool_id, 5)
    client = cognito(proxy.url)
    proxy.inject("ListUsers", "drop_users")
    proxy.inject("ListUsers", "end_chain")

    dropped = client.list_users(UserPoolId=pool_id, Limit=2)
    ended = client.list_users(UserPoolId=pool_id, Limit=2, PaginationToken=dropped["PaginationToken"])
    normal = client.list_users(UserPoolId=pool_id, Limit=2)

    assert dropped["Users"] == [] and dropped["PaginationToken"]
    assert len(ended["Users"]) == 2 and "PaginationToken" not in ended
    assert len(normal["Users"]) == 2 and normal["PaginationToken"]
    assert proxy.faulted["ListUsers"] == 2 and proxy.calls["ListUsers"] == 3


def test_a_fault_after_forwarding_waits_for_a_call_that_is_not_throttled(
    moto_url: str, proxy: StrictCognitoProxy
) -> None:
    pool_id = create_pool(moto_url)
    add_users(moto_url, pool_id, 1)
    client = cognito(proxy.url)
    proxy.force_throttle("ListUsers", 1)
    proxy.inject("ListUsers", "drop_users")

    with pytest.raises(client.exceptions.TooManyRequestsException):
        client.list_users(UserPoolId=pool_id)
    assert client.list_users(UserPoolId=pool_id)["Users"] == []
    assert len(client.list_users(UserPoolId=pool_id)["Users"]) == 1
    assert proxy.stats()["faulted"] == {"ListUsers": 1}


def test_faults_hit_only_their_operation_and_unknown_faults_are_refused(
    moto_url: str, proxy: StrictCognitoProxy
) -> None:
    pool_id = create_pool(moto_url)
    proxy.inject("AdminCreateUser", "server_error", times=2)

    cognito(proxy.url).list_users(UserPoolId=pool_id)

    assert proxy.calls["ListUsers"] == 1 and not proxy.faulted
    with pytest.raises(ValueError, match="unknown fault"):
        proxy.inject("ListUsers", "explode")  # type: ignore[arg-type]


# -- plumbing -------------------------------------------------------------------


def test_other_services_pass_through_uncounted(proxy: StrictCognitoProxy) -> None:
    identity = aws_client("sts", proxy.url).get_caller_identity()

    assert identity["Account"]
    assert not proxy.calls and not proxy.throttled and not proxy.rejected


def test_latency_is_added_per_call(moto_url: str) -> None:
    pool_id = create_pool(moto_url)
    with StrictCognitoProxy(moto_url, latency=0.2) as proxy:
        client = cognito(proxy.url)
        client.list_users(UserPoolId=pool_id)  # warm up the connection
        started = time.perf_counter()
        client.list_users(UserPoolId=pool_id)
        elapsed = time.perf_counter() - started

    assert elapsed >= 0.2


def test_stop_closes_port_and_pooled_connections(moto_url: str) -> None:
    proxy = StrictCognitoProxy(moto_url)
    client = cognito(proxy.start())
    client.list_user_pools(MaxResults=1)  # leaves a keep-alive connection in the pool
    proxy.stop()
    proxy.stop()

    with pytest.raises(EndpointConnectionError):
        client.list_user_pools(MaxResults=1)
    assert proxy.calls["ListUserPools"] == 1
