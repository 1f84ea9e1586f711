"""labs hold their tag and management subnet

A lab's allocation (ltb.allocation) is kept on its row, so workers on several hosts share
one: a tag unique among the labs that hold one (a partial unique index), and a management
subnet that overlaps no other held subnet (an exclusion constraint with the `&&` operator of
inet, GiST). store.allocations chooses them under an advisory lock; the constraints are the
backstop.

Until now the allocations of the portal's labs were in the controller's registry file
(<state dir>/allocations.json): the entries of the labs of this store are copied here, so a
running lab keeps the tag and subnet it was deployed with. The file is left as it is (the
store ignores its entries for its own labs); a file that cannot be read copies nothing (the
labs take the file's entry, or a free allocation, at their next task: store.allocations).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 19:30:00

"""

import json
import os
from collections.abc import Sequence
from ipaddress import IPv4Network
from pathlib import Path

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("labs", sa.Column("tag", sa.String(6), nullable=True))
    op.add_column("labs", sa.Column("mgmt_subnet", sa.dialects.postgresql.CIDR(), nullable=True))
    op.add_column(
        "labs",
        sa.Column("mgmt_subnet_given", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.execute("ALTER TABLE labs ADD CONSTRAINT labs_tag_held_once UNIQUE (tag)")
    op.execute(
        "ALTER TABLE labs ADD CONSTRAINT labs_mgmt_subnets_apart "
        "EXCLUDE USING gist (mgmt_subnet inet_ops WITH &&) WHERE (mgmt_subnet IS NOT NULL)"
    )
    op.execute(
        "ALTER TABLE labs ADD CONSTRAINT labs_allocation_whole "
        "CHECK ((tag IS NULL) = (mgmt_subnet IS NULL))"
    )
    _copy_registry_file()


def _copy_registry_file() -> None:
    path = Path(os.environ.get("LTB_STATE_DIR", "/var/lib/ltb")) / "allocations.json"
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["labs"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    labs = sa.table(
        "labs",
        sa.column("name", sa.String),
        sa.column("tag", sa.String),
        sa.column("mgmt_subnet", sa.dialects.postgresql.CIDR),
        sa.column("mgmt_subnet_given", sa.Boolean),
    )
    connection = op.get_bind()
    names = set(connection.scalars(sa.select(labs.c.name)))
    for name, entry in sorted(entries.items()):
        if name not in names:
            continue  # a lab of operators' runs by hand: the file keeps it
        try:
            values = {
                "tag": str(entry["tag"]),
                "mgmt_subnet": str(IPv4Network(str(entry["mgmt_subnet"]))),
                "mgmt_subnet_given": bool(entry.get("given", False)),
            }
        except (KeyError, TypeError, ValueError):
            continue
        connection.execute(sa.update(labs).where(labs.c.name == name).values(**values))


def downgrade() -> None:
    op.execute("ALTER TABLE labs DROP CONSTRAINT labs_allocation_whole")
    op.execute("ALTER TABLE labs DROP CONSTRAINT labs_mgmt_subnets_apart")
    op.execute("ALTER TABLE labs DROP CONSTRAINT labs_tag_held_once")
    op.drop_column("labs", "mgmt_subnet_given")
    op.drop_column("labs", "mgmt_subnet")
    op.drop_column("labs", "tag")
