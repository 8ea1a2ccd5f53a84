"""The metadata schema: one definition, rendered for each SQL dialect.

Internal tables carry a ``t0_`` prefix and are written only by the kernel.
The unprefixed names (``objects``, ``versions``, ``prefixes``, ``buckets``,
``events``, ``principals``, ``audit``) are read-only views: the live catalog that SQL
queries see. A catalog row *is* the version row, so it is written in the same
transaction as the element, with no second copy to keep in step.

``t0_prefixes`` keeps, for every '/'-delimited prefix of every current key
(and ``''`` for the whole bucket), how many current objects lie under it and
their bytes. It is updated in the transaction that changes a key's current
version, so "how much is under this prefix" is one row, at any scale.

``t0_uploads`` holds the multipart uploads in progress and ``t0_upload_parts``
their parts. A part's chunks are referenced (counted in ``t0_chunks.refcount``)
from the moment the part commits until its upload is completed or aborted, so
garbage collection never takes them; an upload id begins with its initiation
time in fixed-width hex, so ``(bucket, key, upload_id)`` is S3's listing order.

``t0_tables`` holds the tables of the DataBase (``tier0.db``): each is named
``(bucket, name)``, identified by the ``seq`` of the event that created it,
and described by its Arrow schema; ``t0_table_files`` holds their Parquet
data files, each stored like an object's bytes (a chunk manifest whose
chunks it references, counted in ``t0_chunks.refcount``). A table's rows are
the union of its files; a commit adds and removes whole files.
Every row has a rowid, unique in its table and kept when a rewrite copies the
row: a file written by an insert numbers its rows from ``row_base``, allocated
from ``next_rowid`` in the commit (so rowids grow in commit order); a
rewritten file stores its rows' rowids in a hidden ``_rowid`` column
(``row_base`` NULL). ``rowid_max`` is a file's highest. ``t0_table_indexes``
holds each vector column's approximate nearest-neighbour index, a serialized
blob like a data file, keyed by rowid and covering the rows up to ``rowid_max``.

``t0_cursors`` holds how far a consumer of the event log has read, by name
(the last ``seq`` it has handled): the semantic index of a bucket
(``tier0.db._semantic``) reads only the events after its cursor.

``t0_triggers`` holds the DataEngine's triggers (``tier0.engine``): each its
spec as JSON, ``active`` or ``paused``, and ``after_seq``, the last event
before it existed (it fires for later ones only). ``t0_invocations`` holds one
row per (event, trigger) match, made by the dispatcher in the transaction that
advances its cursor (``engine.dispatch`` in ``t0_cursors``): so each matching
event yields exactly one invocation, which workers lease and run;
``idempotency_key`` is ``<seq>:<trigger>``.

``t0_bucket_config`` holds each bucket's configuration, one row per kind
(``tags``, ``cors``, ``policy``, ``acl``), deleted with the bucket.
``t0_object_acls`` holds the canned ACL of the versions that have one other
than ``private`` (keyed by the version's ``seq``, dropped with the version).

Times are stored as integer microseconds since the epoch (identical on every
backend, exact, cheap to index); the views expose them as timestamps.
"""

from __future__ import annotations

from typing import Final

SCHEMA_VERSION: Final = 5

#: Dialect-specific spellings substituted into the DDL below.
_TYPES: Final = {
    "sqlite": {
        "text": "TEXT",  # BINARY collation: byte order of UTF-8, which is S3's order
        "blob": "BLOB",
        "json": "TEXT",
        "autoid": "INTEGER PRIMARY KEY",
    },
    "postgres": {
        "text": 'TEXT COLLATE "C"',  # byte order, and LIKE 'prefix%' can use the index
        "blob": "BYTEA",
        "json": "JSONB",
        "autoid": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    },
}

_TABLES: Final = """
CREATE TABLE IF NOT EXISTS t0_schema (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS t0_counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS t0_buckets (
    name {text} PRIMARY KEY,
    owner {text} NOT NULL,
    versioning TEXT NOT NULL,
    created_us BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS t0_versions (
    seq BIGINT PRIMARY KEY,
    bucket {text} NOT NULL,
    key {text} NOT NULL,
    version_id {text} NOT NULL,
    is_latest SMALLINT NOT NULL,
    is_delete_marker SMALLINT NOT NULL,
    size BIGINT NOT NULL,
    stored_bytes BIGINT NOT NULL,
    etag {text} NOT NULL,
    content_type {text} NOT NULL,
    created_us BIGINT NOT NULL,
    modified_us BIGINT NOT NULL,
    owner {text} NOT NULL,
    metadata {json} NOT NULL,
    tags {json} NOT NULL,
    headers {json} NOT NULL,
    checksum {text} NOT NULL,
    checksums {json} NOT NULL,
    parts {json},
    inline_data {blob},
    manifest {blob}
);
CREATE INDEX IF NOT EXISTS t0_versions_key ON t0_versions (bucket, key, seq);
CREATE UNIQUE INDEX IF NOT EXISTS t0_versions_latest ON t0_versions (bucket, key)
    WHERE is_latest = 1;
CREATE TABLE IF NOT EXISTS t0_prefixes (
    bucket {text} NOT NULL,
    prefix {text} NOT NULL,
    depth INTEGER NOT NULL,
    objects BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    PRIMARY KEY (bucket, prefix)
);
CREATE INDEX IF NOT EXISTS t0_versions_size ON t0_versions (size)
    WHERE is_latest = 1 AND is_delete_marker = 0;
CREATE TABLE IF NOT EXISTS t0_chunks (
    hash {blob} PRIMARY KEY,
    length BIGINT NOT NULL,
    stored_bytes BIGINT NOT NULL,
    refcount BIGINT NOT NULL,
    state SMALLINT NOT NULL,
    updated_us BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS t0_chunks_unreferenced ON t0_chunks (updated_us)
    WHERE refcount = 0;
CREATE TABLE IF NOT EXISTS t0_uploads (
    upload_id {text} PRIMARY KEY,
    bucket {text} NOT NULL,
    key {text} NOT NULL,
    initiator {text} NOT NULL,
    created_us BIGINT NOT NULL,
    content_type {text} NOT NULL,
    metadata {json} NOT NULL,
    tags {json} NOT NULL,
    headers {json} NOT NULL,
    checksum_algorithm {text},
    checksum_type {text},
    acl {text}
);
CREATE INDEX IF NOT EXISTS t0_uploads_key ON t0_uploads (bucket, key, upload_id);
CREATE TABLE IF NOT EXISTS t0_upload_parts (
    upload_id {text} NOT NULL,
    part_number INTEGER NOT NULL,
    size BIGINT NOT NULL,
    stored_bytes BIGINT NOT NULL,
    etag {text} NOT NULL,
    checksum {text} NOT NULL,
    checksums {json} NOT NULL,
    manifest {blob},
    created_us BIGINT NOT NULL,
    PRIMARY KEY (upload_id, part_number)
);
-- Uploads completed within the upload expiry: a completion retried (its answer lost)
-- gets the same answer rather than NoSuchUpload, as from S3.
CREATE TABLE IF NOT EXISTS t0_completed_uploads (
    upload_id {text} PRIMARY KEY,
    bucket {text} NOT NULL,
    key {text} NOT NULL,
    version_id {text} NOT NULL,
    completed_us BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS t0_completed_uploads_time ON t0_completed_uploads (completed_us);
CREATE TABLE IF NOT EXISTS t0_events (
    seq BIGINT PRIMARY KEY,
    type {text} NOT NULL,
    bucket {text} NOT NULL,
    key {text} NOT NULL,
    version_id {text},
    size BIGINT,
    etag {text},
    principal {text} NOT NULL,
    time_us BIGINT NOT NULL,
    detail {json} NOT NULL
);
CREATE TABLE IF NOT EXISTS t0_principals (
    id TEXT PRIMARY KEY,
    name {text} NOT NULL UNIQUE,
    kind {text} NOT NULL,
    created_us BIGINT NOT NULL,
    created_by {text} NOT NULL
);
CREATE TABLE IF NOT EXISTS t0_credentials (
    access_key TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL,
    secret_key TEXT NOT NULL,
    created_us BIGINT NOT NULL,
    expires_us BIGINT
);
CREATE INDEX IF NOT EXISTS t0_credentials_principal ON t0_credentials (principal_id);
CREATE TABLE IF NOT EXISTS t0_grants (
    id {autoid},
    principal_id TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT NOT NULL,
    created_us BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS t0_grants_principal ON t0_grants (principal_id);
CREATE TABLE IF NOT EXISTS t0_bucket_config (
    bucket {text} NOT NULL,
    name {text} NOT NULL,
    value {json} NOT NULL,
    modified_us BIGINT NOT NULL,
    PRIMARY KEY (bucket, name)
);
CREATE TABLE IF NOT EXISTS t0_object_acls (
    seq BIGINT PRIMARY KEY,
    bucket {text} NOT NULL,
    acl {text} NOT NULL
);
CREATE INDEX IF NOT EXISTS t0_object_acls_bucket ON t0_object_acls (bucket);
CREATE TABLE IF NOT EXISTS t0_tables (
    table_id BIGINT PRIMARY KEY,
    bucket {text} NOT NULL,
    name {text} NOT NULL,
    owner {text} NOT NULL,
    schema {blob} NOT NULL,
    columns {json} NOT NULL,
    snapshot BIGINT NOT NULL,
    rows BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    next_rowid BIGINT NOT NULL,
    created_us BIGINT NOT NULL,
    modified_us BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS t0_tables_name ON t0_tables (bucket, name);
CREATE TABLE IF NOT EXISTS t0_table_files (
    table_id BIGINT NOT NULL,
    file_id {text} NOT NULL,
    rows BIGINT NOT NULL,
    size BIGINT NOT NULL,
    manifest {blob} NOT NULL,
    columns {json} NOT NULL,
    row_base BIGINT,
    rowid_max BIGINT NOT NULL,
    added_seq BIGINT NOT NULL,
    PRIMARY KEY (table_id, file_id)
);
CREATE TABLE IF NOT EXISTS t0_table_indexes (
    table_id BIGINT NOT NULL,
    column_name {text} NOT NULL,
    metric TEXT NOT NULL,
    params {json} NOT NULL,
    rows BIGINT NOT NULL,
    rowid_max BIGINT NOT NULL,
    size BIGINT NOT NULL,
    manifest {blob} NOT NULL,
    built_seq BIGINT NOT NULL,
    PRIMARY KEY (table_id, column_name)
);
CREATE TABLE IF NOT EXISTS t0_cursors (
    name {text} PRIMARY KEY,
    seq BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS t0_triggers (
    name {text} PRIMARY KEY,
    spec {json} NOT NULL,
    state TEXT NOT NULL,
    after_seq BIGINT NOT NULL,
    created_us BIGINT NOT NULL,
    created_by {text} NOT NULL
);
CREATE TABLE IF NOT EXISTS t0_invocations (
    id {autoid},
    idempotency_key {text} NOT NULL UNIQUE,
    trigger_name {text} NOT NULL,
    function_name {text} NOT NULL,
    seq BIGINT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    not_before_us BIGINT NOT NULL,
    lease_owner {text},
    lease_until_us BIGINT,
    created_us BIGINT NOT NULL,
    started_us BIGINT,
    ended_us BIGINT,
    error {text},
    function_version INTEGER,
    event {json},
    order_key {text},
    logs {json}
);
CREATE INDEX IF NOT EXISTS t0_invocations_ready ON t0_invocations (status, not_before_us);
CREATE TABLE IF NOT EXISTS t0_functions (
    name {text} NOT NULL,
    version INTEGER NOT NULL,
    spec {json} NOT NULL,
    package {blob},
    package_sha256 TEXT,
    created_us BIGINT NOT NULL,
    created_by {text} NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS t0_streams (
    name {text} PRIMARY KEY,
    retention_s BIGINT,
    retention_bytes BIGINT,
    first_offset BIGINT NOT NULL,
    next_offset BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    created_us BIGINT NOT NULL,
    created_by {text} NOT NULL
);
CREATE TABLE IF NOT EXISTS t0_stream_messages (
    stream {text} NOT NULL,
    msg_offset BIGINT NOT NULL,
    time_us BIGINT NOT NULL,
    key {text},
    value {blob} NOT NULL,
    headers {json},
    producer {text} NOT NULL,
    PRIMARY KEY (stream, msg_offset)
);
CREATE TABLE IF NOT EXISTS t0_stream_groups (
    stream {text} NOT NULL,
    group_name {text} NOT NULL,
    committed BIGINT NOT NULL,
    updated_us BIGINT NOT NULL,
    PRIMARY KEY (stream, group_name)
);
CREATE TABLE IF NOT EXISTS t0_pipelines (
    name {text} PRIMARY KEY,
    definition {json} NOT NULL,
    created_us BIGINT NOT NULL,
    created_by {text} NOT NULL
);
CREATE TABLE IF NOT EXISTS t0_secrets (
    name {text} PRIMARY KEY,
    value {text} NOT NULL,
    created_us BIGINT NOT NULL,
    created_by {text} NOT NULL
);
CREATE TABLE IF NOT EXISTS t0_audit (
    id {autoid},
    time_us BIGINT NOT NULL,
    principal {text} NOT NULL,
    action {text} NOT NULL,
    resource {text} NOT NULL,
    allowed SMALLINT NOT NULL,
    reason {text} NOT NULL
);
"""

# The timestamp expression differs; everything else in the views is shared.
# Millisecond precision, computed with integers on both engines so that the
# same instant prints the same on both (floating point would round either way).
_TIMESTAMP: Final = {
    "sqlite": (
        "(strftime('%Y-%m-%d %H:%M:%S', {col} / 1000000, 'unixepoch')"
        " || printf('.%03d', ({col} / 1000) % 1000))"
    ),
    "postgres": "(to_timestamp(({col} / 1000) / 1000.0) AT TIME ZONE 'UTC')",
}

# Indexes on columns that an upgrade adds: made after the upgrade has added them.
_LATE_INDEXES: Final = """
CREATE INDEX IF NOT EXISTS t0_invocations_order
    ON t0_invocations (trigger_name, order_key, id);
CREATE INDEX IF NOT EXISTS t0_invocations_function
    ON t0_invocations (function_name, status, id);
"""

#: What upgrading from each older version runs, before the views are made again
#: (new tables need nothing: the CREATE TABLE IF NOT EXISTS above makes them).
_UPGRADES: Final = {
    4: """
ALTER TABLE t0_invocations ADD COLUMN function_version INTEGER;
ALTER TABLE t0_invocations ADD COLUMN event {json};
ALTER TABLE t0_invocations ADD COLUMN order_key {text};
ALTER TABLE t0_invocations ADD COLUMN logs {json};
""",
}

_VIEWS: Final = """
CREATE VIEW objects AS
    SELECT bucket, key, version_id, size, stored_bytes, etag, content_type,
           {ts(created_us)} AS created, {ts(modified_us)} AS modified,
           owner, metadata, tags, checksum, seq
    FROM t0_versions WHERE is_latest = 1 AND is_delete_marker = 0;
CREATE VIEW versions AS
    SELECT bucket, key, version_id, is_latest, is_delete_marker, size, stored_bytes, etag,
           content_type, {ts(created_us)} AS created, {ts(modified_us)} AS modified,
           owner, metadata, tags, checksum, seq
    FROM t0_versions;
CREATE VIEW prefixes AS
    SELECT bucket, prefix, depth, objects, bytes FROM t0_prefixes WHERE objects > 0;
CREATE VIEW buckets AS
    SELECT name, owner, versioning, {ts(created_us)} AS created FROM t0_buckets;
CREATE VIEW events AS
    SELECT seq, type, bucket, key, version_id, size, etag, principal,
           {ts(time_us)} AS time, detail
    FROM t0_events;
CREATE VIEW principals AS
    SELECT id, name, kind, {ts(created_us)} AS created, created_by FROM t0_principals;
CREATE VIEW audit AS
    SELECT id, {ts(time_us)} AS time, principal, action, resource, allowed, reason
    FROM t0_audit;
CREATE VIEW tables AS
    SELECT bucket, name, owner, columns, rows, bytes, {ts(created_us)} AS created,
           {ts(modified_us)} AS modified, snapshot
    FROM t0_tables;
CREATE VIEW triggers AS
    SELECT name, spec, state, after_seq, {ts(created_us)} AS created, created_by
    FROM t0_triggers;
CREATE VIEW invocations AS
    SELECT id, idempotency_key, trigger_name AS trigger, function_name AS function,
           function_version, seq, status, attempts, {ts(created_us)} AS created,
           {ts(started_us)} AS started, {ts(ended_us)} AS ended,
           (ended_us - started_us) / 1000 AS duration_ms, error, event, logs
    FROM t0_invocations;
CREATE VIEW streams AS
    SELECT name, first_offset, next_offset, next_offset - first_offset AS messages, bytes,
           retention_s, retention_bytes, {ts(created_us)} AS created, created_by
    FROM t0_streams;
CREATE VIEW pipelines AS
    SELECT name, definition, {ts(created_us)} AS created, created_by FROM t0_pipelines;
CREATE VIEW functions AS
    SELECT name, version, spec, package_sha256, {ts(created_us)} AS created, created_by
    FROM t0_functions;
CREATE VIEW uploads AS
    SELECT u.bucket, u.key, u.upload_id, u.initiator, {ts(u.created_us)} AS initiated,
           count(p.part_number) AS parts, coalesce(sum(p.size), 0) AS bytes
    FROM t0_uploads u LEFT JOIN t0_upload_parts p ON p.upload_id = u.upload_id
    GROUP BY u.bucket, u.key, u.upload_id, u.initiator, u.created_us;
"""

#: The relations SQL over the catalog may read, and nothing else.
CATALOG_VIEWS: Final = (
    "objects",
    "versions",
    "prefixes",
    "buckets",
    "events",
    "principals",
    "audit",
    "uploads",
    "tables",
    "triggers",
    "invocations",
    "functions",
    "streams",
    "pipelines",
)


def render_ddl(dialect: str) -> tuple[list[str], list[str]]:
    """The statements that create the schema on ``dialect`` (idempotent): the tables
    first, then what may need an upgrade (`render_upgrade`) to have run between."""
    types = _TYPES[dialect]
    views = _VIEWS
    for col in ("created_us", "modified_us", "time_us", "u.created_us", "started_us", "ended_us"):
        views = views.replace("{ts(" + col + ")}", _TIMESTAMP[dialect].format(col=col))
    late = _split(_LATE_INDEXES)
    for view in _split(views):
        name = view.split()[2]
        late.append(f"DROP VIEW IF EXISTS {name}")
        late.append(view)
    return _split(_TABLES.format(**types)), late


def render_upgrade(dialect: str, version: int) -> list[str]:
    """The statements that bring tables of schema ``version`` up to `SCHEMA_VERSION`."""
    statements: list[str] = []
    for older in range(version, SCHEMA_VERSION):
        statements += _split(_UPGRADES.get(older, "").format(**_TYPES[dialect]))
    return statements


def _split(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
