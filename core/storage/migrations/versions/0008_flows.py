"""flows: warehouses.kind (central / store / other), document_lines.entry (scan or text)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 12:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('warehouses', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), nullable=False, server_default='other'))
    with op.batch_alter_table('document_lines', schema=None) as batch_op:
        batch_op.add_column(sa.Column('entry', sa.String(length=8), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('document_lines', schema=None) as batch_op:
        batch_op.drop_column('entry')
    with op.batch_alter_table('warehouses', schema=None) as batch_op:
        batch_op.drop_column('kind')
