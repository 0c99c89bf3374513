-- The nodes of a Debrief cluster and their leases (server/src/cluster/, docs/cluster.md).
--
-- Applied by every node when it registers; idempotent. Nodes that start at the same moment
-- take the advisory lock first, because two concurrent CREATE TABLE IF NOT EXISTS can both
-- find the table missing and one then fails on the catalogue's unique index.
--
-- The `documents` table (name, owner, epoch) belongs to the storage backend's schema
-- (server/src/storage/postgres/schema.sql); `documents.owner` holds a `nodes.id`, without a
-- foreign key: a single node writes its own id there without registering, and a node's row may
-- be removed long after it died while its id is still the owner of record.
BEGIN;
SELECT pg_advisory_xact_lock(hashtext('debrief cluster schema'));

CREATE TABLE IF NOT EXISTS nodes (
    -- Random for every process start (cluster::NodeId).
    id text PRIMARY KEY,
    -- Where other nodes reach this node's internal link (host:port).
    address text NOT NULL,
    -- The lease ends here, by the database's clock: every comparison with it uses now() or
    -- clock_timestamp() of the database, never a node's clock.
    lease_until timestamptz NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    renewed_at timestamptz NOT NULL DEFAULT now()
);

COMMIT;
