-- Debrief's tables in PostgreSQL (server/src/storage/postgres/). Applied at every start under an
-- advisory lock, so it must stay idempotent: CREATE ... IF NOT EXISTS only.

CREATE TABLE IF NOT EXISTS schema_version (
    version integer NOT NULL
);
INSERT INTO schema_version (version)
    SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM schema_version);

-- The fencing gate: who owns each document, and the epoch it was claimed with. Every commit of
-- a document's records (and of its compaction) succeeds only while this row still names the
-- committing node and the epoch it loaded the document with.
CREATE TABLE IF NOT EXISTS documents (
    name text PRIMARY KEY,
    owner text,
    epoch bigint NOT NULL DEFAULT 0,
    claimed_at timestamptz
);

-- One row per group-commit record of a document: its updates, each a lib0 varUint8Array.
CREATE TABLE IF NOT EXISTS records (
    name text NOT NULL,
    seq bigint NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (name, seq)
);

-- The compacted state of a document: every record below covers_below folded into one update.
CREATE TABLE IF NOT EXISTS snapshots (
    name text PRIMARY KEY,
    covers_below bigint NOT NULL,
    snapshot bytea NOT NULL
);

-- The metadata trees (reviews, sessions, pinned versions, anonymous keys and votes, webhooks...):
-- keys and values are bytes the server encodes.
CREATE TABLE IF NOT EXISTS meta (
    tree text NOT NULL,
    key bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (tree, key)
);

-- Held anonymous items of a cluster (reviews/anonymous/sealed.rs; docs/cluster.md, "Anonymity in
-- PostgreSQL"): one fixed block of slots, each sealed under a key of the cluster secret and cut
-- into pieces small enough never to reach TOAST. Every row is made once (sealed empty) and then
-- only updated in place, on a clock; the low fill factor leaves room on each page for the new
-- version of its rows, so an update neither moves a row elsewhere nor grows the file.
CREATE TABLE IF NOT EXISTS held_slots (
    slot integer NOT NULL,
    piece smallint NOT NULL,
    sealed bytea NOT NULL,
    PRIMARY KEY (slot, piece)
) WITH (fillfactor = 50);
-- Never compressed or moved out of line: a piece is random bytes, and a TOAST row would carry an
-- increasing OID.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'held_slots'::regclass
               AND attname = 'sealed' AND attstorage <> 'p') THEN
        ALTER TABLE held_slots ALTER COLUMN sealed SET STORAGE PLAIN;
    END IF;
END $$;
