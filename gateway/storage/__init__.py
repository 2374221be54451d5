"""Durable storage behind one interface (`base.Storage`): SQLite, the embedded default, and PostgreSQL,
for several gateway instances on one database. `open_storage(url)` picks the implementation."""

from gateway.storage.base import (
    ApplicationQuery,
    ApplicationRecord,
    Applied,
    AuditRecord,
    ChainHead,
    Checkpoint,
    DocumentMeta,
    DuplicateIntake,
    InstanceRecord,
    Lease,
    MessageLogEntry,
    MessageQuery,
    MessageSummary,
    NewApplication,
    NewOutboxMessage,
    OutboxKind,
    OutboxRecord,
    OutboxState,
    OutboxStats,
    QueueStats,
    StepRecord,
    Storage,
    StorageError,
    StorageUnavailable,
    Transition,
    TransitionConflict,
)

__all__ = [
    "ApplicationQuery", "ApplicationRecord", "Applied", "AuditRecord", "ChainHead", "Checkpoint", "DocumentMeta",
    "DuplicateIntake", "InstanceRecord", "Lease", "MessageLogEntry", "MessageQuery", "MessageSummary",
    "NewApplication", "NewOutboxMessage", "OutboxKind", "OutboxRecord", "OutboxState", "OutboxStats", "QueueStats",
    "StepRecord", "Storage", "StorageError", "StorageUnavailable", "Transition", "TransitionConflict",
    "open_storage",
]


def open_storage(url: str, *, pool_size: int = 8) -> Storage:
    """The storage for a `[storage] url`: `sqlite:///path` or `postgresql://...`."""
    if url.startswith("sqlite:///"):
        from gateway.storage.sqlite import SqliteStorage

        return SqliteStorage(url[len("sqlite:///"):])
    if url.startswith(("postgresql://", "postgres://")):
        from gateway.storage.postgres import PostgresStorage

        return PostgresStorage(url, pool_size=pool_size)
    raise ValueError(f"unsupported storage url {url!r}")
