-- 0002: the change log becomes a gap-safe feed, and durable subscriptions keep their
-- state here (DESIGN §9, SPEC §15).
--
-- Feed order is (xid, position): the id of the writing transaction, then the row's
-- identity. A reader reads only rows of transactions older than every transaction still
-- running (`xid < pg_snapshot_xmin(pg_current_snapshot())`): those are final, so no row
-- can ever commit behind a reader's cursor, and rolled-back positions need no waiting.
-- Rows written before this migration get xid 0: they come first, in position order.
-- Adding a column with a constant default rewrites nothing and fires no UPDATE trigger.

ALTER TABLE changes ADD COLUMN xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE changes ALTER COLUMN xid SET DEFAULT pg_current_xact_id();

CREATE INDEX changes_feed_idx ON changes (xid, position);

-- handle.changes(id): the entity's changes in order.
CREATE INDEX changes_entity_order_idx ON changes (entity_key, position);

-- Broadcast(consumer=name): the last change each named consumer handled.
CREATE TABLE consumers (
    name        text PRIMARY KEY,
    xid         xid8 NOT NULL,
    position    bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- WorkQueue(group=name): how far each group has scanned the feed...
CREATE TABLE work_groups (
    name        text PRIMARY KEY,
    xid         xid8 NOT NULL,
    position    bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- ...and its unfinished deliveries: pending (due at not_before), claimed (by a member
-- until lease_until, under claim_token: new on every claim, so a lost claim cannot act)
-- or dead (set aside after the last retry). Done ones are deleted.
CREATE TABLE deliveries (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_name   text NOT NULL,
    change_xid   xid8 NOT NULL,
    change_pos   bigint NOT NULL,
    entity_key   uuid NOT NULL,
    state        text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'claimed', 'dead')),
    attempts     integer NOT NULL DEFAULT 0,
    not_before   timestamptz NOT NULL DEFAULT '-infinity',
    lease_until  timestamptz,
    member       text,
    claim_token  uuid,
    last_error   text,
    failed_at    timestamptz,
    UNIQUE (group_name, change_pos)
);

-- claim: the group's unfinished deliveries in feed order.
CREATE INDEX deliveries_order_idx ON deliveries (group_name, change_xid, change_pos)
    WHERE state <> 'dead';
-- per-entity order: is there an older unfinished delivery of this entity?
CREATE INDEX deliveries_entity_idx ON deliveries (group_name, entity_key, change_xid, change_pos)
    WHERE state <> 'dead';
