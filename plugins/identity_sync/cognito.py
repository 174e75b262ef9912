"""Cognito access: one hook, on the Amazon provider's AwsBaseHook, for every call we make.

The provider has no Cognito hook; AwsBaseHook gives a boto3 client from an Airflow
connection, so an emulator endpoint is just a connection extra
(``{"service_config": {"cognito-idp": {"endpoint_url": ...}}}``) and the production
code path is the tested one.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.retries import quota, standard
from botocore.retries.base import BaseRetryableChecker

from identity_sync.config import SUB_PREFIX_DIGITS
from identity_sync.ratelimit import RateLimiter

log = logging.getLogger(__name__)

LIST_USERS_PAGE_SIZE = 60  # Cognito's maximum; AWS rejects a larger Limit
MAX_CHAINS = 16  # token chains in flight at once; 16 keep 30 RPS busy up to ~500 ms a round trip
THROTTLE_CODES = frozenset({"TooManyRequestsException", "ThrottlingException"})
TRANSIENT_ATTEMPTS = 6  # HTTP requests per call for 5xx and connection errors: at most ~1.6 s of botocore backoff
LIST_CLIENTS_PAGE_SIZE = 60  # ListUserPoolClients' maximum MaxResults

T = TypeVar("T")


class CognitoThrottledError(RuntimeError):
    """Cognito kept throttling a call after every retry."""


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """'Full jitter' exponential backoff: callers that collided spread out instead of retrying in step."""
    return rng.uniform(0, min(cap, base * 2**attempt))


def is_throttle(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in THROTTLE_CODES


class CognitoHook(AwsBaseHook):
    """cognito-idp client with two retry policies, one per kind of failure, never both on one error.

    - 5xx answers and connection errors: botocore's ``standard`` retry machinery (its
      checker, 50 ms exponential backoff with jitter and retry quota), with throttles taken
      out of its conditions: at most ``transient_attempts`` HTTP requests per attempt.
    - Throttles (``TooManyRequestsException``): ours, in ``call``: the limiter slows down
      and the call is retried with full-jitter backoff, at most ``max_attempts`` times,
      counted in ``throttled``. botocore never retries or paces a throttle itself.

    botocore's own handler is configured with ``total_max_attempts`` 1, so it never
    retries; a call therefore sends at most ``max_attempts * transient_attempts`` requests.
    """

    def __init__(
        self,
        aws_conn_id: str | None = "aws_default",
        *,
        max_attempts: int = 10,
        transient_attempts: int = TRANSIENT_ATTEMPTS,
        backoff_base: float = 0.1,
        backoff_cap: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        # One pooled connection per token chain: with botocore's default of 10, the chains beyond
        # it open (and discard) a new connection, a TCP and TLS handshake, for every call.
        kwargs.setdefault(
            "config",
            Config(retries={"mode": "standard", "total_max_attempts": 1}, max_pool_connections=MAX_CHAINS),
        )
        super().__init__(aws_conn_id=aws_conn_id, client_type="cognito-idp", **kwargs)
        self.max_attempts = max_attempts
        self.transient_attempts = transient_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._sleep = sleep
        self._rng = random.Random(seed)
        self.calls = 0
        self.throttled = 0
        self._counters = threading.Lock()

    def get_client_type(self, region_name: str | None = None, config: Config | None = None, **kwargs: Any) -> Any:
        """The boto3 client, with the retries of 5xx and connection errors registered on it."""
        client = super().get_client_type(region_name=region_name, config=config, **kwargs)
        register_transient_retries(client, self.transient_attempts)
        return client

    def call(self, operation: str, limiter: RateLimiter | None = None, **params: Any) -> dict[str, Any]:
        """One API call, paced by ``limiter`` and retried with backoff while Cognito throttles it.

        A throttle also slows the limiter down: something else is using the same quota.
        """
        method = getattr(self.conn, _snake_case(operation))
        for attempt in range(self.max_attempts):
            if limiter:
                limiter.acquire()
            with self._counters:
                self.calls += 1
            try:
                return method(**params)
            except ClientError as exc:
                if not is_throttle(exc):
                    raise
                with self._counters:
                    self.throttled += 1
                    delay = backoff_delay(attempt, self.backoff_base, self.backoff_cap, self._rng)
                if limiter:
                    limiter.slow_down()
                if attempt + 1 == self.max_attempts:
                    break
                self._sleep(delay)
        raise CognitoThrottledError(f"{operation} still throttled after {self.max_attempts} attempts")

    def list_users(
        self, user_pool_id: str, filter_expression: str | None = None, limiter: RateLimiter | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every user of the pool (or of one filtered slice), page by page until no token is left.

        A filtered page may be empty while a token still follows, so only the token ends the loop.
        """
        params: dict[str, Any] = {"UserPoolId": user_pool_id, "Limit": LIST_USERS_PAGE_SIZE}
        if filter_expression:
            params["Filter"] = filter_expression
        while True:
            page = self.call("ListUsers", limiter, **params)
            yield from page.get("Users", [])
            token = page.get("PaginationToken")
            if not token:
                return
            params["PaginationToken"] = token

    def list_users_sliced(
        self,
        user_pool_id: str,
        slices: int,
        limiter: RateLimiter,
        max_chains: int = MAX_CHAINS,
        collect: Callable[[Iterator[dict[str, Any]]], T] = list,  # type: ignore[assignment]
    ) -> list[T]:
        """The pool as disjoint slices by sub prefix, their token chains run side by side.

        One chain waits a round trip per page; several keep the shared limiter, and so
        the quota, busy. Returns ``collect`` of each slice's users (a list of them by
        default), in the order of sub_prefixes(); a ``collect`` that consumes the users as
        they come keeps no page alive after it is read.
        """
        self.conn  # noqa: B018 - build the (thread-safe) client once, before the threads share it

        def chain(prefix: str) -> T:
            return collect(self.list_users(user_pool_id, f'sub ^= "{prefix}"' if prefix else None, limiter))

        prefixes = sub_prefixes(slices)
        with ThreadPoolExecutor(max_workers=min(max_chains, len(prefixes))) as chains:
            return list(chains.map(chain, prefixes))

    def describe_user_pool(self, user_pool_id: str) -> dict[str, Any]:
        return self.call("DescribeUserPool", UserPoolId=user_pool_id)["UserPool"]

    def app_clients(self, user_pool_id: str) -> Iterator[dict[str, Any]]:
        """Every app client of the pool, described (DescribeUserPoolClient: the listing omits WriteAttributes)."""
        params: dict[str, Any] = {"UserPoolId": user_pool_id, "MaxResults": LIST_CLIENTS_PAGE_SIZE}
        while True:
            page = self.call("ListUserPoolClients", **params)
            for client in page.get("UserPoolClients", []):
                described = self.call("DescribeUserPoolClient", UserPoolId=user_pool_id, ClientId=client["ClientId"])
                yield described["UserPoolClient"]
            if not page.get("NextToken"):
                return
            params["NextToken"] = page["NextToken"]

    def add_string_attribute(self, user_pool_id: str, attribute: str, length: int) -> None:
        """Add a mutable custom String attribute of exactly ``length`` characters (it can never be removed)."""
        self.call(
            "AddCustomAttributes",
            UserPoolId=user_pool_id,
            CustomAttributes=[
                {
                    "Name": attribute.removeprefix("custom:"),
                    "AttributeDataType": "String",
                    "Mutable": True,
                    "StringAttributeConstraints": {"MinLength": str(length), "MaxLength": str(length)},
                }
            ],
        )

    def set_attribute(self, user_pool_id: str, username: str, attribute: str, value: str) -> None:
        """AdminUpdateUserAttributes: one write, and it makes the user a billable MAU this month."""
        self.call(
            "AdminUpdateUserAttributes",
            UserPoolId=user_pool_id,
            Username=username,
            UserAttributes=[{"Name": attribute, "Value": value}],
        )

    def create_user(self, user_pool_id: str, username: str, attributes: dict[str, str]) -> str:
        """AdminCreateUser without an invitation message; returns the new user's sub."""
        response = self.call(
            "AdminCreateUser",
            UserPoolId=user_pool_id,
            Username=username,
            UserAttributes=[{"Name": k, "Value": v} for k, v in attributes.items()],
            MessageAction="SUPPRESS",
        )
        return user_attributes(response["User"])["sub"]


def schema_attribute(pool: dict[str, Any], attribute: str) -> dict[str, Any] | None:
    """The pool's schema entry for ``attribute`` (DescribeUserPool names custom ones 'custom:...')."""
    for entry in pool.get("SchemaAttributes", []):
        if entry.get("Name") == attribute:
            return entry
    return None


def sub_prefixes(slices: int) -> list[str]:
    """Disjoint prefixes that together cover every sub (a lower-case UUID): 1, 16 or 256 of them."""
    digits = SUB_PREFIX_DIGITS[slices]
    return [format(n, f"0{digits}x") for n in range(slices)] if digits else [""]


class _UnlessThrottled(BaseRetryableChecker):
    """botocore's standard retry conditions, except a throttle: pacing that is the caller's job."""

    def __init__(self, max_attempts: int, throttles: standard.ThrottlingErrorDetector) -> None:
        self._standard = standard.StandardRetryConditions(max_attempts=max_attempts)
        self._throttles = throttles

    def is_retryable(self, context: standard.RetryContext) -> bool:
        return not self._throttles.is_throttling_error_from_context(context) and self._standard.is_retryable(context)


def register_transient_retries(client: Any, total_max_attempts: int) -> None:
    """Retry 5xx answers and connection errors the way botocore's standard mode does, throttles not at all.

    Built from botocore's own standard-mode parts (register_retry_handler does the same
    with the throttle conditions in). Registered first, so it answers before botocore's
    handler, which the client's config keeps from retrying (total_max_attempts 1).
    """
    service = client.meta.service_model.service_id.hyphenize()
    adapter = standard.RetryEventAdapter()
    throttles = standard.ThrottlingErrorDetector(adapter)
    retry_quota = standard.RetryQuotaChecker(quota.RetryQuota(), throttles)
    handler = standard.RetryHandler(
        retry_policy=standard.RetryPolicy(
            retry_checker=_UnlessThrottled(total_max_attempts, throttles),
            retry_backoff=standard.ExponentialBackoff(service_name=service, throttling_detector=throttles),
        ),
        retry_event_adapter=adapter,
        retry_quota=retry_quota,
        service_name=service,
    )
    client.meta.events.register(f"after-call.{service}", retry_quota.release_retry_quota)
    client.meta.events.register_first(
        f"needs-retry.{service}", handler.needs_retry, unique_id=f"identity-sync-transient-{service}"
    )


def _snake_case(operation: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")


def user_attributes(user: dict[str, Any]) -> dict[str, str]:
    """ListUsers returns attributes as a list of Name/Value pairs."""
    return {a["Name"]: a.get("Value") for a in user.get("Attributes", [])}
