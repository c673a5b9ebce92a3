"""The PostgreSQL adapter: the durable, shared entity store and its migrations."""

from reactive_entities.adapters.postgres.store import DEFAULT_SCHEMA, PostgresEntityStore

__all__ = ["DEFAULT_SCHEMA", "PostgresEntityStore"]
