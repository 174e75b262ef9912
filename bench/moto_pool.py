"""A moto server in a process of its own, holding one large pool: `python -m bench.moto_pool --users N`.

The pool is filled through moto's backend directly (AdminCreateUser one by one is
quadratic in moto); the server is its own process so that its CPU does not compete with
the benchmark's threads for one interpreter lock. Prints one JSON line
{"url", "pool_id", "users"} and serves until its standard input closes.

moto filters ListUsers by scanning the whole pool on every page (about 20 ms of CPU a
page at 20,000 users): at 28 pages a second that is most of a core, and on a busy
machine the emulator's CPU, not the product's pacing, then sets the pace. Real Cognito's
time per call is its latency, which the strict layer adds. So this server keeps each
filter's result (``_indexed_list_users``) while the pool's membership is unchanged: a
page costs moto what it costs to serialise and paginate, and the answers are the same.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid

import boto3
from moto.cognitoidp.models import PAGINATION_MODEL, CognitoIdpBackend, CognitoIdpUser, UserStatus, cognitoidp_backends
from moto.core import DEFAULT_ACCOUNT_ID
from moto.server import ThreadedMotoServer
from moto.utilities.paginator import paginate

REGION = "us-east-2"
ATTRIBUTE = "custom:internal_user_id"

_filtered = CognitoIdpBackend.list_users.__wrapped__  # moto's own filter, under its paginate decorator
_results: dict[tuple[str, str | None, int], list[CognitoIdpUser]] = {}


@paginate(pagination_model=PAGINATION_MODEL)
def list_users(self: CognitoIdpBackend, user_pool_id: str, filt: str) -> list[CognitoIdpUser]:
    """moto's list_users, its filtered list kept per (pool, filter, pool size): the same pages, paginated by moto."""
    key = (user_pool_id, filt, len(self.describe_user_pool(user_pool_id).users))
    if key not in _results:
        _results[key] = _filtered(self, user_pool_id, filt)
    return _results[key]


def _indexed_list_users() -> None:
    CognitoIdpBackend.list_users = list_users  # the paginate decorator finds its model by this name


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--with-ids", action="store_true", help="every user already carries an InternalUserID")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    _indexed_list_users()

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    client = boto3.client(
        "cognito-idp", region_name=REGION, endpoint_url=url, aws_access_key_id="x", aws_secret_access_key="x"
    )
    pool_id = client.create_user_pool(
        PoolName="bench",
        UsernameAttributes=["email"],
        Schema=[{"Name": ATTRIBUTE.removeprefix("custom:"), "AttributeDataType": "String", "Mutable": True}],
    )["UserPool"]["Id"]
    pool = cognitoidp_backends[DEFAULT_ACCOUNT_ID][REGION].user_pools[pool_id]
    for n in range(args.users):
        attributes = [{"Name": "email", "Value": f"user{n:07d}@example.com"}]
        if args.with_ids:
            attributes.append({"Name": ATTRIBUTE, "Value": str(uuid.uuid4())})
        user = CognitoIdpUser(pool_id, None, None, UserStatus.CONFIRMED, attributes)
        pool.users[user.username] = user
    print(json.dumps({"url": url, "pool_id": pool_id, "users": args.users}), flush=True)
    sys.stdin.read()  # serve until the parent closes our stdin
    server.stop()


if __name__ == "__main__":
    main()
