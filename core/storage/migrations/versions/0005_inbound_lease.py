"""inbound_events: lease_until, so resuming unhandled events claims them (one instance at a time)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 22:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.types

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('inbound_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_until', core.types.UTCDateTime(), nullable=True))
        batch_op.create_index('ix_inbound_open', ['status', 'lease_until'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('inbound_events', schema=None) as batch_op:
        batch_op.drop_index('ix_inbound_open')
        batch_op.drop_column('lease_until')
