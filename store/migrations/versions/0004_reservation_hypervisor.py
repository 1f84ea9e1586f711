"""reservations record their hypervisor

A reservation is placed on one hypervisor when it is booked (store.capacity.placement) and
records it, so that later bookings count it there and its lab is deployed there when it
starts. Reservations booked before this have none: they are placed first-fit at each check
and their lab goes to the job layer's default hypervisor (LTB_HYPERVISOR).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 18:40:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("reservations", sa.Column("hypervisor", sa.String(255), nullable=True))


def downgrade() -> None:
    op.drop_column("reservations", "hypervisor")
