"""Adapters: concrete implementations of the ports (memory, PostgreSQL, logging)."""
