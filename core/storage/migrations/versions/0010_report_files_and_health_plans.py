"""report files and health plans

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.types

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('report_files',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('filename', sa.String(length=128), nullable=False),
    sa.Column('content_type', sa.String(length=96), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', core.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_report_files')),
    sa.UniqueConstraint('key', name=op.f('uq_report_files_key')),
    sa.UniqueConstraint('token', name=op.f('uq_report_files_token'))
    )
    op.create_table('health_plans',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('department', sa.String(length=64), nullable=False),
    sa.Column('score', core.types.Dec(), nullable=False),
    sa.Column('head_id', sa.Integer(), nullable=True),
    sa.Column('plan', sa.Text(), nullable=False),
    sa.Column('submitted_by_id', sa.Integer(), nullable=True),
    sa.Column('submitted_at', core.types.UTCDateTime(), nullable=True),
    sa.Column('created_at', core.types.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['head_id'], ['users.id'], name=op.f('fk_health_plans_head_id_users')),
    sa.ForeignKeyConstraint(['submitted_by_id'], ['users.id'], name=op.f('fk_health_plans_submitted_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_health_plans')),
    sa.UniqueConstraint('period', 'department', name=op.f('uq_health_plans_period_department'))
    )


def downgrade() -> None:
    op.drop_table('health_plans')
    op.drop_table('report_files')
