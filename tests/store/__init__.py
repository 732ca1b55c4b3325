"""Tests of the SQL store (SQLite always, PostgreSQL when BOT_TEST_POSTGRES_URL is set)."""
