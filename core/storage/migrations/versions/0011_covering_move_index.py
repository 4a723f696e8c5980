"""covering stock-move index, out-of-order flag on balances

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

BACKFILL = """
UPDATE stock_balances SET unordered = TRUE
WHERE EXISTS (
    SELECT 1 FROM (
        SELECT product_id, warehouse_id, batch_id, posted_at,
               MAX(posted_at) OVER (PARTITION BY product_id, warehouse_id, batch_id ORDER BY id
                                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before_max
        FROM stock_moves
    ) AS m
    WHERE m.posted_at < m.before_max AND m.product_id = stock_balances.product_id
      AND m.warehouse_id = stock_balances.warehouse_id AND m.batch_id = stock_balances.batch_id
)
"""
COLUMNS = ['product_id', 'posted_at', 'id', 'warehouse_id', 'bucket', 'batch_id', 'document_id', 'qty',
           'balance_after']


def upgrade() -> None:
    with op.batch_alter_table('stock_moves', schema=None) as batch_op:
        batch_op.create_index('ix_stock_moves_product_time', COLUMNS, unique=False)
        batch_op.drop_index('ix_stock_moves_key_time')
    with op.batch_alter_table('stock_balances', schema=None) as batch_op:
        batch_op.add_column(sa.Column('unordered', sa.Boolean(), server_default=sa.false(), nullable=False))
    # Keys whose existing history is already out of time order (posted with allow_backdating, or within the
    # backdating grace): a move older than one posted before it. Once, over the whole ledger.
    op.execute(sa.text(BACKFILL))


def downgrade() -> None:
    with op.batch_alter_table('stock_balances', schema=None) as batch_op:
        batch_op.drop_column('unordered')
    with op.batch_alter_table('stock_moves', schema=None) as batch_op:
        batch_op.create_index('ix_stock_moves_key_time', ['product_id', 'warehouse_id', 'posted_at', 'id'],
                              unique=False)
        batch_op.drop_index('ix_stock_moves_product_time')
