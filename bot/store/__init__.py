"""Durable state: the store port, an in-memory implementation and the SQL implementation."""
