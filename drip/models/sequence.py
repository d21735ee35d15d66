"""A series (sequence), its steps and the saved versions of each step's template."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from drip.db import UTCDateTime
from drip.models.base import IDS_NEVER_REUSED, Base


class Sequence(Base):
    __tablename__ = "sequences"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    tagline: Mapped[str] = mapped_column(sa.String(300), default="")
    description: Mapped[str] = mapped_column(sa.Text, default="")
    bonuses: Mapped[list[dict[str, str]]] = mapped_column(sa.JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    steps: Mapped[list[Step]] = relationship(
        back_populates="sequence", order_by="Step.number", cascade="all, delete-orphan"
    )


class Step(Base):
    """Step 0 is the welcome; steps 1..N are lessons, sent on local day `day_offset`."""

    __tablename__ = "steps"
    __table_args__ = (
        sa.UniqueConstraint("sequence_id", "number", name="uq_steps_sequence_number"),
        sa.CheckConstraint("number >= 0", name="number_not_negative"),
        sa.CheckConstraint("day_offset >= 0", name="day_offset_not_negative"),
        IDS_NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sequence_id: Mapped[int] = mapped_column(sa.ForeignKey("sequences.id", ondelete="CASCADE"))
    number: Mapped[int]
    day_offset: Mapped[int]
    sequence: Mapped[Sequence] = relationship(back_populates="steps")


class TemplateVersion(Base):
    """One saved edit of a step's email. Rows are never updated: a save adds a version."""

    __tablename__ = "template_versions"
    __table_args__ = IDS_NEVER_REUSED

    id: Mapped[int] = mapped_column(primary_key=True)
    step_id: Mapped[int] = mapped_column(sa.ForeignKey("steps.id", ondelete="CASCADE"), index=True)
    subject: Mapped[str] = mapped_column(sa.String(200))
    preheader: Mapped[str] = mapped_column(sa.String(200))
    body_html: Mapped[str] = mapped_column(sa.Text)
    body_text: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(sa.String(254))
