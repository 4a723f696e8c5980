"""job runs: one row per (job, business period), claimed with a lease

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 12:35:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.types

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('job_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job', sa.String(length=48), nullable=False),
    sa.Column('period', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('claimed_at', core.types.UTCDateTime(), nullable=False),
    sa.Column('lease_until', core.types.UTCDateTime(), nullable=False),
    sa.Column('finished_at', core.types.UTCDateTime(), nullable=True),
    sa.Column('result', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_runs')),
    sa.UniqueConstraint('job', 'period', name=op.f('uq_job_runs_job_period'))
    )


def downgrade() -> None:
    op.drop_table('job_runs')
