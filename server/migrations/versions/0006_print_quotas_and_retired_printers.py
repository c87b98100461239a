"""printing: per-site print quotas, a job's purpose and part volume, retired printers

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 10:00:00.000000
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('print_quotas',
    sa.Column('site_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('active_jobs', sa.Integer(), nullable=True),
    sa.Column('monthly_volume_cm3', sa.Float(), nullable=True),
    sa.Column('updated_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('updated_at_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], ),
    sa.PrimaryKeyConstraint('site_id')
    )
    with op.batch_alter_table('print_jobs', schema=None) as batch_op:
        # Jobs queued before this revision were all the part itself. (The server default stays: dropping it
        # would make SQLite copy the table, which print_job_events references.)
        batch_op.add_column(sa.Column('purpose', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False,
                                      server_default='clinical'))
        batch_op.add_column(sa.Column('volume_mm3', sa.Float(), nullable=True))
    with op.batch_alter_table('printers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('retired_at_ms', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('retired_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))


def downgrade() -> None:
    # ALTER TABLE … DROP COLUMN (SQLite 3.35+), not a copy of the table: print_job_events references print_jobs,
    # and dropping a referenced table that has rows fails with the foreign keys on.
    with op.batch_alter_table('printers', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('retired_by')
        batch_op.drop_column('retired_at_ms')
    with op.batch_alter_table('print_jobs', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('volume_mm3')
        batch_op.drop_column('purpose')
    op.drop_table('print_quotas')
