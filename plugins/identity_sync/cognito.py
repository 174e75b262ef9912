"""Cognito access: one hook, on the Amazon provider's AwsBaseHook, for every call we make.

The provider has no Cognito hook; AwsBaseHook gives a boto3 client from an Airflow
connection, so an emulator endpoint is just a connection extra
(``{"service_config": {"cognito-idp": {"endpoint_url": ...}}}``) and the production
code path is the tested one.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from botocore.config import Config
from botocore.exceptions import ClientError

log = logging.getLogger(__name__)

LIST_USERS_PAGE_SIZE = 60  # Cognito's maximum; AWS rejects a larger Limit
THROTTLE_CODES = frozenset({"TooManyRequestsException", "ThrottlingException"})

T = TypeVar("T")


class CognitoThrottledError(RuntimeError):
    """Cognito kept throttling a call after every retry."""


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """'Full jitter' exponential backoff: callers that collided spread out instead of retrying in step."""
    return rng.uniform(0, min(cap, base * 2**attempt))


def is_throttle(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in THROTTLE_CODES


class CognitoHook(AwsBaseHook):
    """cognito-idp client with our own retry policy on throttling.

    botocore's retries are switched off so that there is one policy, ours: exponential
    backoff with full jitter on ``TooManyRequestsException``, counted in ``throttled``.
    """

    def __init__(
        self,
        aws_conn_id: str | None = "aws_default",
        *,
        max_attempts: int = 10,
        backoff_base: float = 0.1,
        backoff_cap: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("config", Config(retries={"mode": "standard", "total_max_attempts": 1}))
        super().__init__(aws_conn_id=aws_conn_id, client_type="cognito-idp", **kwargs)
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._sleep = sleep
        self._rng = random.Random(seed)
        self.calls = 0
        self.throttled = 0

    def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """One API call, retried with backoff while Cognito throttles it."""
        method = getattr(self.conn, _snake_case(operation))
        for attempt in range(self.max_attempts):
            self.calls += 1
            try:
                return method(**params)
            except ClientError as exc:
                if not is_throttle(exc):
                    raise
                self.throttled += 1
                if attempt + 1 == self.max_attempts:
                    break
                self._sleep(backoff_delay(attempt, self.backoff_base, self.backoff_cap, self._rng))
        raise CognitoThrottledError(f"{operation} still throttled after {self.max_attempts} attempts")

    def list_users(self, user_pool_id: str, filter_expression: str | None = None) -> Iterator[dict[str, Any]]:
        """Every user of the pool (or of one filtered slice), page by page until no token is left.

        A filtered page may be empty while a token still follows, so only the token ends the loop.
        """
        params: dict[str, Any] = {"UserPoolId": user_pool_id, "Limit": LIST_USERS_PAGE_SIZE}
        if filter_expression:
            params["Filter"] = filter_expression
        while True:
            page = self.call("ListUsers", **params)
            yield from page.get("Users", [])
            token = page.get("PaginationToken")
            if not token:
                return
            params["PaginationToken"] = token

    def describe_user_pool(self, user_pool_id: str) -> dict[str, Any]:
        return self.call("DescribeUserPool", UserPoolId=user_pool_id)["UserPool"]

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


def _snake_case(operation: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")


def user_attributes(user: dict[str, Any]) -> dict[str, str]:
    """ListUsers returns attributes as a list of Name/Value pairs."""
    return {a["Name"]: a.get("Value") for a in user.get("Attributes", [])}
