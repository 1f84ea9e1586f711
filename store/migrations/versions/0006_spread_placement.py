"""labs and reservations record where each of their nodes runs when they are spread

A lab that fits no single hypervisor is spread: its nodes are assigned to several
(store.capacity.spread). The assignment (node -> hypervisor, JSON) is kept on the lab and on
the reservation, so that bookings count each part on its own hypervisor and the deploy puts
each node where it was placed. None (every row before this): the lab runs on its
`hypervisor`, but for nodes its topology pins elsewhere.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 22:20:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("labs", "reservations"):
        op.add_column(table, sa.Column("placement", postgresql.JSONB(), nullable=True))


def downgrade() -> None:
    for table in ("labs", "reservations"):
        op.drop_column(table, "placement")
