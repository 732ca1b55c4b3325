"""The database's identity: one row with a random id, written with the schema.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 16:00:00

A running bot reads the id when it opens the store and compares it before each job: tables
dropped and created again under it (``bot db upgrade`` after a drop, an empty dump restored)
hold a new id, or none, and the bot refuses to write there (``SqlStore.check_identity``).

A database created by an older bot gets its id here, at ``bot db upgrade`` (the bot refuses a
database below its head revision, so no bot runs on it meanwhile); a new database gets it when
this revision runs after the others. The id is random, never derived from the URL: the same
database reached by two URLs is one database, a database recreated at the same URL is another.
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    identity = op.create_table(
        "database_identity",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("database_id", sa.String(length=32), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_database_identity_single_row"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(identity, [{"id": 1, "database_id": uuid.uuid4().hex}])


def downgrade() -> None:
    op.drop_table("database_identity")
