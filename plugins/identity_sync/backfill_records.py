"""What the backfill's tasks hand each other: small typed records, never dicts of agreed keys.

Airflow stores a task's return value in XCom through its serde, which rebuilds a
dataclass on the other side only if the class is allowed; ``allow_class`` allows these
in every process that imports this module (each task's process imports the DAG file,
which imports it). Records hold counts, ids and paths, never an e-mail address.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from airflow.sdk.serde import allow_class


@dataclass(frozen=True)
class Inspection:
    """One environment, read and planned before any write (a dry run stops here)."""

    environment: str
    files: str  # the run folder of this environment
    pending_migrations: list[str]
    ids_to_assign: int
    attribute_to_add: bool
    counts: dict[str, int]
    billable_mau_writes: int
    refusals: list[str] = field(default_factory=list)
    reports: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Prerequisites:
    """What the prerequisites step changed: the table's schema and ids, the pool's schema."""

    environment: str
    files: str
    migrations_applied: list[str]
    ids_assigned: int
    attribute_added: bool


@dataclass(frozen=True)
class Chunk:
    """One mapped write task: a Parquet file of writes or creations, at its share of the rate."""

    environment: str
    files: str
    kind: str  # "write" (AdminUpdateUserAttributes) or "create" (AdminCreateUser)
    name: str  # the file under ``files``
    part: str  # "2/4"

    @property
    def label(self) -> str:
        return f"{self.environment} {self.kind}s {self.part}"

    @property
    def progress_name(self) -> str:
        """The chunk's checkpoint (``ChunkProgress``), next to its file."""
        return f"{self.name}.progress.json"


@dataclass(frozen=True)
class ChunkOutcome:
    """What one chunk did, user by user summed up; the users behind each figure are in ``issues``."""

    environment: str
    kind: str
    part: str
    done: int  # written or created, by every try of this chunk together
    already_done: int  # creations that found the user an earlier try had created (it carries our id)
    user_gone: int  # deleted since the plan
    row_changed: int  # the row's id or link changed since the plan: skipped
    collided: int  # AdminCreateUser met a user created meanwhile by someone else: left alone
    resumed_at: int  # users an earlier try had already done when this try started
    throttled: int  # by this try
    issues: str | None = None  # path of the chunk's per-user issues, when it has any


@dataclass(frozen=True)
class Coverage:
    """The final check: how many of the pool's users carry a valid id."""

    environment: str
    pool_users: int
    with_valid_id: int
    share: float


for _record in (Inspection, Prerequisites, Chunk, ChunkOutcome, Coverage):
    allow_class(_record)
