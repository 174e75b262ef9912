"""A realistic three-environment population for the demo and the end-to-end tests.

prod: every person has a user (with the attribute) and a row. The dev and qa tables are
"restored" copies of prod's, so every CognitoID in them points at a prod identity. The
dev pool then holds every case the sync must handle: prod users with a dev account
(relink), changed e-mails, dev-only users, users created before the backfill (e-mail
fallback, some with another case), users nobody knows, prod users without a dev account,
each kind of conflict, and two hostile users carrying someone else's address: an
UNCONFIRMED self-sign-up and a disabled user, reported as conflicts and never linked.
``expected_dev`` says what a correct sync reports.
"""

from __future__ import annotations

import random
import sqlite3
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from identity_sync.cognito import user_attributes
from identity_sync.sql import SQLITE, schema_statement, statement

ATTRIBUTE_NAME = "internal_user_id"
ATTRIBUTE = f"custom:{ATTRIBUTE_NAME}"
DEMO_PASSWORD = "Demo-Passw0rd!"  # emulator users only: meets the default password policy


@dataclass(frozen=True)
class Person:
    internal_id: str
    email: str
    given_name: str
    family_name: str


@dataclass(frozen=True)
class PoolUser:
    """A user to create: ``internal_id`` None means created before the backfill (no attribute).

    ``verified``: the person proved the address and signed in (``email_verified=true``,
    status CONFIRMED), the only kind of user the sync and the backfill may link by e-mail.
    ``signed_up``: created by someone's own SignUp through the app client, never confirmed
    (UNCONFIRMED, address not verified). ``enabled`` False: disabled by an administrator.
    """

    email: str | None
    internal_id: str | None
    given_name: str
    family_name: str
    verified: bool = True
    signed_up: bool = False
    enabled: bool = True


@dataclass
class Scenario:
    prod: list[Person]
    dev_users: list[PoolUser]
    qa_users: list[PoolUser]
    expected_dev: dict[str, int] = field(default_factory=dict)

    def prod_users(self) -> list[PoolUser]:
        """prod's pool: every person, with the attribute (the backfill has run there)."""
        return [PoolUser(p.email, p.internal_id, p.given_name, p.family_name) for p in self.prod]


_FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim", "Katherine", "Linus"]
_LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman", "Lee"]


def build_scenario(prod_users: int = 2500, seed: int = 7) -> Scenario:
    """The people and who has an account where; deterministic for a seed."""
    rng = random.Random(seed)

    def person(n: int, domain: str = "example.com") -> Person:
        return Person(
            str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            f"user{n:06d}@{domain}",
            rng.choice(_FIRST),
            rng.choice(_LAST),
        )

    prod = [person(n) for n in range(prod_users)]
    order = list(range(prod_users))
    rng.shuffle(order)
    take = iter(order)

    def pick(count: int) -> list[Person]:
        return [prod[next(take)] for _ in range(count)]

    def keyed(p: Person, email: str | None = None) -> PoolUser:
        return PoolUser(email or p.email, p.internal_id, p.given_name, p.family_name)

    share = prod_users // 100
    relinked = pick(prod_users * 80 // 100)
    case_changed = pick(2 * share)  # relinked too; e-mail differs only in case: no e-mail update
    renamed = pick(2 * share)  # relinked and e-mail changed in dev
    before_backfill = pick(share)  # no attribute; matched by e-mail
    before_backfill_case = pick(share // 2)  # no attribute; e-mail in another case
    swap_a, swap_b = pick(1)[0], pick(1)[0]  # renamed onto each other's e-mail: a swap
    collide_with = pick(1)[0]  # dev changed e-mail to another row's
    collider = pick(1)[0]
    insert_target = pick(1)[0]  # no dev account; a dev-only user took its e-mail
    dup_id = pick(1)[0]  # two dev users carry this id
    # Hostile: no dev account of their own; someone else's user carries their address.
    signup_victim = pick(1)[0]  # a stranger signed up with this address (UNCONFIRMED, not verified)
    disabled_victim = pick(1)[0]  # a disabled user carries this address
    dev_only = [person(prod_users + n, "dev.example.com") for n in range(4 * share)]
    insert_collides = person(prod_users + 4 * share, "dev.example.com")

    dev: list[PoolUser] = [keyed(p) for p in relinked]
    dev += [keyed(p, p.email.upper()) for p in case_changed]
    dev += [keyed(p, p.email.replace("@", ".new@")) for p in renamed]
    dev += [PoolUser(p.email, None, p.given_name, p.family_name) for p in before_backfill]
    dev += [PoolUser(p.email.title(), None, p.given_name, p.family_name) for p in before_backfill_case]
    dev += [keyed(swap_a, swap_b.email), keyed(swap_b, swap_a.email)]
    dev += [keyed(collider, collide_with.email)]  # collide_with has no dev account: its row keeps the e-mail
    dev += [keyed(dup_id), keyed(dup_id, dup_id.email.replace("@", ".twin@"))]
    dev += [keyed(p) for p in dev_only]
    dev += [PoolUser(insert_target.email, insert_collides.internal_id, "Insert", "Collides")]
    dev += [PoolUser(f"stranger{n}@dev.example.com", None, "Un", "Known") for n in range(share)]
    dev += [PoolUser(f"bad-id{n}@dev.example.com", f"legacy-{n}", "Bad", "Id") for n in range(3)]
    dev += [PoolUser(email, None, "Twin", "One") for email in ("twin@dev.example.com", "TWIN@dev.example.com")]
    dev += [PoolUser(signup_victim.email.upper(), None, "Self", "Signup", verified=False, signed_up=True)]
    dev += [PoolUser(disabled_victim.email, None, "Dis", "Abled", enabled=False)]
    rng.shuffle(dev)

    relinks = len(relinked) + len(case_changed) + len(renamed) + 3  # + swap_a, swap_b, collider
    fallbacks = len(before_backfill) + len(before_backfill_case)
    expected = {
        "relink": relinks,
        "email_update": len(renamed) + 2,  # + the swap; the collider's new e-mail is a conflict
        "email_fallback": fallbacks,
        "insert": len(dev_only),
        # prod rows whose person has no (usable) dev account, but the two whose address a hostile user carries
        # and dup_id's (rows of users in conflict are conflicts)
        "stale": prod_users - relinks - fallbacks - 2 - 1,
        "unlinked": share,
        # dup_id x2 and its row, bad ids x3, twins x2, the collider's e-mail, the colliding insert; the
        # self-sign-up and the disabled user, each naming its victim's row (never linked by an unproven or
        # disabled address)
        "conflict": 2 + 1 + 3 + 2 + 1 + 1 + 2,
        "unchanged": 0,
    }
    qa = [keyed(p) for p in prod[: prod_users // 5]]
    return Scenario(prod=prod, dev_users=dev, qa_users=qa, expected_dev=expected)


APP_CLIENT = "demo-app"


def create_pool(client: Any, name: str, *, attribute: str | None = "mutable") -> str:
    """A pool like production's: e-mail as username; the id attribute "mutable", "immutable" or None (absent).

    It has one app client, as the pool behind an application does, that users sign up
    through; it has no WriteAttributes list, so it may write the standard attributes only
    and never the id.
    """
    schema = []
    if attribute:
        schema.append(
            {
                "Name": ATTRIBUTE_NAME,
                "AttributeDataType": "String",
                "Mutable": attribute == "mutable",
                "StringAttributeConstraints": {"MinLength": "36", "MaxLength": "36"},
            }
        )
    pool = client.create_user_pool(
        PoolName=name, UsernameAttributes=["email"], **({"Schema": schema} if schema else {})
    )
    pool_id = pool["UserPool"]["Id"]
    client.create_user_pool_client(UserPoolId=pool_id, ClientName=APP_CLIENT)
    return pool_id


def _sign_up(client: Any, pool_id: str, user: PoolUser) -> str:
    """SignUp through the pool's app client, as anyone on the internet can: UNCONFIRMED, address unverified."""
    clients = client.list_user_pool_clients(UserPoolId=pool_id, MaxResults=60)["UserPoolClients"]
    app = next(c["ClientId"] for c in clients if c.get("ClientName") == APP_CLIENT)
    response = client.sign_up(
        ClientId=app,
        Username=user.email,
        Password=DEMO_PASSWORD,
        UserAttributes=[
            {"Name": "email", "Value": user.email},
            {"Name": "given_name", "Value": user.given_name},
            {"Name": "family_name", "Value": user.family_name},
        ],
    )
    return response["UserSub"]


def create_users(client: Any, pool_id: str, users: Iterable[PoolUser]) -> list[str]:
    """AdminCreateUser for each, one after the other (moto's pools are not safe for concurrent
    writes); returns the subs in input order.

    A verified user without the attribute (the ones linked by e-mail) is also given a
    permanent password, which makes it CONFIRMED as a user who signed in is; the others stay
    FORCE_CHANGE_PASSWORD, which linking by id does not look at (and one call fewer each).
    """
    subs = []
    for user in users:
        if user.signed_up:
            subs.append(_sign_up(client, pool_id, user))
            continue
        attributes = [
            {"Name": "given_name", "Value": user.given_name},
            {"Name": "family_name", "Value": user.family_name},
        ]
        if user.email:
            attributes.append({"Name": "email", "Value": user.email})
            attributes.append({"Name": "email_verified", "Value": "true" if user.verified else "false"})
        if user.internal_id:
            attributes.append({"Name": ATTRIBUTE, "Value": user.internal_id})
        response = client.admin_create_user(
            UserPoolId=pool_id,
            Username=user.email or str(uuid.uuid4()),
            UserAttributes=attributes,
            MessageAction="SUPPRESS",
        )
        username = response["User"]["Username"]
        if user.verified and not user.internal_id:
            client.admin_set_user_password(
                UserPoolId=pool_id, Username=username, Password=DEMO_PASSWORD, Permanent=True
            )
        if not user.enabled:
            client.admin_disable_user(UserPoolId=pool_id, Username=username)
        subs.append(user_attributes(response["User"])["sub"])
    return subs


def write_sqlite_table(path: Path, prod: list[Person], subs: list[str], table: str = "Users") -> None:
    """A SQLite Users table holding prod's rows: what a restore from the prod snapshot leaves."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as db:
        db.execute(schema_statement(SQLITE, table))
        db.executemany(
            statement("insert_user", SQLITE, table),
            [(p.internal_id, sub, p.email, p.given_name, p.family_name) for p, sub in zip(prod, subs, strict=True)],
        )
    db.close()
