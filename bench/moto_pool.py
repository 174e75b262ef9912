"""A moto server in a process of its own, holding one large pool: `python -m bench.moto_pool --users N`.

The pool is filled through moto's backend directly (AdminCreateUser one by one is
quadratic in moto); the server is its own process so that its CPU does not compete with
the benchmark's threads for one interpreter lock. Prints one JSON line
{"url", "pool_id", "users"} and serves until its standard input closes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid

import boto3
from moto.cognitoidp.models import CognitoIdpUser, UserStatus, cognitoidp_backends
from moto.core import DEFAULT_ACCOUNT_ID
from moto.server import ThreadedMotoServer

REGION = "us-east-2"
ATTRIBUTE = "custom:internal_user_id"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--with-ids", action="store_true", help="every user already carries an InternalUserID")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

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
