"""replenishment: category strategies, monthly forecast anchors, their override log and promotions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 04:18:34.105128
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.types

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('replenish_strategies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('category', sa.String(length=64), nullable=False),
    sa.Column('strategy', sa.String(length=8), nullable=False),
    sa.Column('service_level', core.types.Dec(), nullable=False),
    sa.Column('fixed_qty', core.types.Dec(), nullable=True),
    sa.Column('review_days', sa.Integer(), nullable=False),
    sa.Column('updated_by_id', sa.Integer(), nullable=True),
    sa.Column('updated_at', core.types.UTCDateTime(), nullable=False),
    sa.CheckConstraint("strategy <> 'fixed' OR fixed_qty IS NOT NULL", name=op.f('ck_replenish_strategies_fixed_qty')),
    sa.CheckConstraint("strategy IN ('fixed', 'static', 'dynamic')", name=op.f('ck_replenish_strategies_strategy')),
    sa.CheckConstraint('review_days >= 1', name=op.f('ck_replenish_strategies_review_days')),
    sa.ForeignKeyConstraint(['updated_by_id'], ['users.id'], name=op.f('fk_replenish_strategies_updated_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_replenish_strategies')),
    sa.UniqueConstraint('category', name=op.f('uq_replenish_strategies_category'))
    )
    op.create_table('forecast_anchors',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('product_id', sa.Integer(), nullable=False),
    sa.Column('month', sa.Date(), nullable=False),
    sa.Column('qty', core.types.Dec(), nullable=False),
    sa.Column('weight_cap', core.types.Dec(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('stat_qty', core.types.Dec(), nullable=True),
    sa.Column('actual_qty', core.types.Dec(), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=False),
    sa.Column('created_at', core.types.UTCDateTime(), nullable=False),
    sa.Column('updated_at', core.types.UTCDateTime(), nullable=False),
    sa.CheckConstraint('length(trim(reason)) > 0', name=op.f('ck_forecast_anchors_reason')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_forecast_anchors_created_by_id_users')),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_forecast_anchors_product_id_products')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_forecast_anchors')),
    sa.UniqueConstraint('product_id', 'month', name=op.f('uq_forecast_anchors_product_id_month'))
    )
    op.create_table('forecast_overrides',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('anchor_id', sa.Integer(), nullable=False),
    sa.Column('old_qty', core.types.Dec(), nullable=True),
    sa.Column('new_qty', core.types.Dec(), nullable=False),
    sa.Column('old_weight_cap', core.types.Dec(), nullable=True),
    sa.Column('new_weight_cap', core.types.Dec(), nullable=False),
    sa.Column('stat_qty', core.types.Dec(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', core.types.UTCDateTime(), nullable=False),
    sa.CheckConstraint('length(trim(reason)) > 0', name=op.f('ck_forecast_overrides_reason')),
    sa.ForeignKeyConstraint(['anchor_id'], ['forecast_anchors.id'], name=op.f('fk_forecast_overrides_anchor_id_forecast_anchors')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_forecast_overrides_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_forecast_overrides'))
    )
    with op.batch_alter_table('forecast_overrides', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_forecast_overrides_anchor_id'), ['anchor_id'], unique=False)

    op.create_table('promotions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('product_id', sa.Integer(), nullable=False),
    sa.Column('start_date', sa.Date(), nullable=False),
    sa.Column('end_date', sa.Date(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=False),
    sa.Column('created_at', core.types.UTCDateTime(), nullable=False),
    sa.CheckConstraint('end_date >= start_date', name=op.f('ck_promotions_dates')),
    sa.CheckConstraint('length(trim(reason)) > 0', name=op.f('ck_promotions_reason')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_promotions_created_by_id_users')),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_promotions_product_id_products')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_promotions'))
    )
    with op.batch_alter_table('promotions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_promotions_product_id'), ['product_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('promotions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_promotions_product_id'))
    op.drop_table('promotions')
    with op.batch_alter_table('forecast_overrides', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_forecast_overrides_anchor_id'))
    op.drop_table('forecast_overrides')
    op.drop_table('forecast_anchors')
    op.drop_table('replenish_strategies')
