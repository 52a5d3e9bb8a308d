"""What the bot owes chats (deliveries) and what it has sent (message refs).

An adapter's delivery loop reads pending deliveries, sends them, then records the platform
message id in one transaction with marking the delivery sent. A crash between sending and
recording sends that one message again on restart (at-least-once, with a window of one send);
the unique (job, target, kind) row makes sure nothing is owed twice.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.tables import Delivery, Job, JobStatus, MessageRef, utcnow

MAX_DELIVERY_ATTEMPTS = 10


async def pending(session: AsyncSession, platform: str, limit: int = 20) -> list[tuple[Delivery, Job]]:
    query = (
        select(Delivery, Job)
        .join(Job, Job.id == Delivery.job_id)
        .where(Delivery.platform == platform, Delivery.status == "pending")
        .order_by(Delivery.id)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in await session.execute(query)]


async def has_pending(session: AsyncSession, platform: str) -> bool:
    query = select(Delivery.id).where(Delivery.platform == platform, Delivery.status == "pending").limit(1)
    return (await session.execute(query)).first() is not None


async def mark_sent(session: AsyncSession, delivery_id: int, message_id: str) -> None:
    delivery = await session.get(Delivery, delivery_id)
    if delivery is None:
        return
    delivery.status = "sent"
    delivery.message_id = message_id
    delivery.sent_at = utcnow()
    delivery.attempts += 1


async def mark_attempt_failed(session: AsyncSession, delivery_id: int, error: str) -> bool:
    """Count a failed send; after MAX_DELIVERY_ATTEMPTS the delivery is given up ("dead").
    Returns True when it was given up."""
    delivery = await session.get(Delivery, delivery_id)
    if delivery is None:
        return True
    delivery.attempts += 1
    delivery.last_error = error[:2000]
    if delivery.attempts >= MAX_DELIVERY_ATTEMPTS:
        delivery.status = "dead"
        return True
    return False


async def record_ref(
    session: AsyncSession,
    platform: str,
    chat_id: str,
    message_id: str,
    job_id: int,
    output_index: int | None,
    role: str,
) -> None:
    query = select(MessageRef).where(MessageRef.platform == platform, MessageRef.chat_id == chat_id, MessageRef.message_id == message_id)
    ref = (await session.execute(query)).scalar_one_or_none()
    if ref is None:
        session.add(
            MessageRef(
                platform=platform,
                chat_id=chat_id,
                message_id=message_id,
                job_id=job_id,
                output_index=output_index,
                role=role,
            )
        )
    else:  # a platform reused an id, or a status message became the result: the newest wins
        ref.job_id, ref.output_index, ref.role = job_id, output_index, role
    await session.flush()


async def find_ref(session: AsyncSession, platform: str, chat_id: str, message_id: str) -> MessageRef | None:
    query = select(MessageRef).where(MessageRef.platform == platform, MessageRef.chat_id == chat_id, MessageRef.message_id == message_id)
    return (await session.execute(query)).scalar_one_or_none()


async def status_message(session: AsyncSession, job_id: int) -> MessageRef | None:
    query = select(MessageRef).where(MessageRef.job_id == job_id, MessageRef.role == "status").limit(1)
    return (await session.execute(query)).scalar_one_or_none()


async def active_status_messages(session: AsyncSession, platform: str) -> list[tuple[MessageRef, Job]]:
    """Status messages of this platform's jobs that are still queued or running."""
    query = (
        select(MessageRef, Job)
        .join(Job, Job.id == MessageRef.job_id)
        .where(MessageRef.platform == platform, MessageRef.role == "status", Job.status.in_(JobStatus.ACTIVE))
        .order_by(Job.id)
    )
    return [(row[0], row[1]) for row in await session.execute(query)]
