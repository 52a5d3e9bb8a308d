"""CommandService: the one entry point adapters use.

    replies = await service.handle(request)      # a message, a command, a reply, a button press
    await service.sent(platform, chat, message_id, reply)     # after sending each reply
    for item in await service.pending(platform):              # results owed to this platform
        ...send...; await service.delivered(platform, item, message_id)
    await service.status_updates(platform)                    # live text for status messages

Bad input becomes one polite reply (kind "error", ephemeral); an unexpected error becomes an
apology with a reference id and a log line, never a traceback in chat.
"""

from __future__ import annotations

import logging
import secrets
import time
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from commands import buttons, registry
from commands.frame.context import Context
from commands.frame.errors import Refused, UserError
from commands.frame.parser import split_command
from commands.frame.types import Outgoing, Reply, Request, StatusUpdate
from commands.jobs import admission as people
from commands.jobs import render, safety, training_text
from commands.pictures.imagine import imagine_or_restyle
from storage import audit, model_library, outbox, queue, training, users
from storage.tables import Job, JobStatus, User, utcnow

log = logging.getLogger(__name__)

STATUS_GRACE = timedelta(seconds=5)


class CommandService:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self._models_synced_at: float | None = None  # time.monotonic() of the last model sync

    # --- incoming --------------------------------------------------------------------------

    async def handle(self, request: Request) -> list[Reply]:
        try:
            return await self._dispatch(request)
        except Refused as refusal:
            if not refusal.recorded:
                await self._audit_refusal(request, refusal)
            return [Reply(refusal.message, kind="error", ephemeral=True)]
        except UserError as error:
            return [Reply(error.message, kind="error", ephemeral=True)]
        except Exception:
            ref = secrets.token_hex(3)
            log.exception("request failed (ref %s): platform=%s user=%s", ref, request.platform, request.user_id)
            return [
                Reply(
                    f"Sorry, something went wrong on my side (ref {ref}). Nothing was queued; please try again.",
                    kind="error",
                    ephemeral=True,
                )
            ]

    async def _audit_refusal(self, request: Request, refusal: Refused) -> None:
        """Refusals are kept (who, what, when) in their own transaction: the request's rolled back."""
        try:
            async with self.ctx.db.transaction() as session:
                account = await users.get_or_create(session, request.platform, request.user_id, request.user_name)
                await audit.record(
                    session,
                    actor_id=account.id,
                    platform=request.platform,
                    platform_user_id=request.user_id,
                    action=f"refused:{refusal.why}",
                    detail=refusal.message,
                )
        except Exception:  # the person still gets their answer
            log.exception("could not write a refusal to the audit log")

    async def _dispatch(self, request: Request) -> list[Reply]:
        await self._sync_models()
        request = await people.resolve(self.ctx, request)
        if request.role == "banned":
            raise Refused("banned", "An admin has barred you from using this bot. If that is a mistake, ask one of them.")
        if request.press is not None:
            return await buttons.press(self.ctx, request)
        if request.options is not None:  # a platform's typed options (Discord): handlers read them by name
            name = str(request.options.get("command", "imagine"))
            return await self._command(request, name, str(request.options.get("args", "") or ""))
        command = split_command(request.text or "")
        if command.name is None:
            if not command.args and not request.attachments:
                return []  # nothing to act on (a sticker, an empty caption)
            return await imagine_or_restyle(self.ctx, request, command.args)  # plain text is a prompt
        return await self._command(request, command.name, command.args)

    async def _sync_models(self) -> None:
        """Reread the models admins added or removed in chat, maybe in another process. Throttled
        (SDBOT_MODEL_SYNC_SECONDS): on SQLite each transaction takes the writer lock, and a read
        at every request made a /queue request 1.25-1.3x slower (bench/model_sync.py)."""
        now = time.monotonic()
        if self._models_synced_at is not None and now - self._models_synced_at < self.ctx.settings.model_sync_seconds:
            return
        async with self.ctx.db.transaction() as session:
            await model_library.sync(session, self.ctx.registry)
        self._models_synced_at = now

    async def _command(self, request: Request, name: str, args: str) -> list[Reply]:
        command = registry.find(name)
        if command is None:
            raise UserError(f"I don't know `/{name}`. Commands: {registry.command_list()}. `/help` explains them.")
        return await command.handler(self.ctx, request, args)

    def knows(self, command: str) -> bool:
        """Whether `command` (without the slash) is one of ours; in a group chat an adapter stays
        quiet about commands it does not know, which may be meant for another bot."""
        return registry.find(command) is not None

    async def originals(self, platform: str, chat_id: str, message_id: str) -> Reply:
        """The original PNGs (with their parameters) of the images a bot message shows."""
        try:
            return await buttons.originals(self.ctx, platform, chat_id, message_id)
        except UserError as error:
            return Reply(error.message, kind="error", ephemeral=True)

    # --- what adapters report back ------------------------------------------------------------

    async def sent(self, platform: str, chat_id: str, message_id: str, reply: Reply) -> None:
        """Record that `reply` went out as `message_id`, so replies and buttons on it resolve."""
        if reply.target is None:
            return
        async with self.ctx.db.transaction() as session:
            await outbox.record_ref(
                session, platform, chat_id, message_id, reply.target.job_id, reply.target.output_index, reply.target.role
            )

    async def pending(self, platform: str, limit: int = 20) -> list[Outgoing]:
        """Results and failure notes owed to chats on `platform`, oldest first."""
        items: list[Outgoing] = []
        async with self.ctx.db.transaction() as session:
            for delivery, job in await outbox.pending(session, platform, limit):
                status = await outbox.status_message(session, job.id)
                if status is None and utcnow() - job.created_at < STATUS_GRACE:
                    # A quick job (an instant upscale) can finish while the adapter is still
                    # sending its status message. Wait for that to be recorded, so the result
                    # replaces it (and, on Discord, answers the same interaction); a status that
                    # never comes (its send failed) holds the result back only this long.
                    continue
                # Whom to mention: the owner's identity on the platform the job was asked on
                # (a linked account's own row may be another platform's).
                owner = await users.identity_on(session, job.user_id, delivery.platform) or await session.get(User, job.user_id)
                replaces_status = True
                if delivery.kind.startswith(training.SAMPLE_DELIVERY):  # a training run's picture so far
                    reply = await self._sample_reply(session, job, delivery.kind)
                    replaces_status = False  # the run goes on: its status message stays
                elif delivery.kind == "result" and job.kind == "train":
                    reply = training_text.result_reply(self.ctx.blobs, job)
                elif delivery.kind == "result":
                    reply = await safety.shield(
                        self.ctx, session, job, buttons.result_reply(self.ctx, job), delivery.platform, delivery.chat_id
                    )
                else:
                    reply = Reply(render.failure_text(job), kind="failure", job_id=job.id)
                items.append(
                    Outgoing(
                        delivery_id=delivery.id,
                        chat_id=delivery.chat_id,
                        reply=reply,
                        reply_to=job.source_message_id,
                        status_message_id=status.message_id if status and replaces_status else None,
                        user_id=owner.platform_user_id if owner else "",
                    )
                )
        return items

    async def _sample_reply(self, session: AsyncSession, job: Job, kind: str) -> Reply:
        step = int(kind.removeprefix(training.SAMPLE_DELIVERY))
        run = await training.of_job(session, job.id)
        sample = next((sample for sample in (run.samples if run else []) if sample["step"] == step), None)
        if sample is None:
            return Reply(f"Job {job.id}: the sample of step {step} is missing.", kind="text", job_id=job.id)
        return training_text.sample_reply(self.ctx.blobs, job, step, sample)

    async def delivered(self, platform: str, item: Outgoing, message_id: str) -> None:
        async with self.ctx.db.transaction() as session:
            await outbox.mark_sent(session, item.delivery_id, message_id)
            target = item.reply.target
            if target is not None:
                await outbox.record_ref(session, platform, item.chat_id, message_id, target.job_id, target.output_index, target.role)

    async def delivery_failed(self, item: Outgoing, error: str) -> bool:
        """Count a failed send. Returns True when the delivery was given up after many tries."""
        async with self.ctx.db.transaction() as session:
            gave_up = await outbox.mark_attempt_failed(session, item.delivery_id, error)
        if gave_up:
            log.error("gave up delivering job %s to %s: %s", item.reply.job_id, item.chat_id, error)
        return gave_up

    async def status_updates(self, platform: str) -> list[StatusUpdate]:
        """The current text of every status message of this platform's waiting or running jobs,
        and a running job's newest live preview. Adapters compare with what they last showed and
        edit at their platform's pace."""
        updates = []
        async with self.ctx.db.transaction() as session:
            for ref, job in await outbox.active_status_messages(session, platform):
                text = render.status_text(job, await queue.position(session, job))
                preview = job.progress_preview if job.status == JobStatus.RUNNING else None
                updates.append(StatusUpdate(ref.chat_id, ref.message_id, job.id, text, preview))
        return updates

    async def busy(self, platform: str) -> bool:
        """Whether this platform still has jobs waiting or running, or results not yet sent."""
        async with self.ctx.db.transaction() as session:
            return await queue.active_on_platform(session, platform) > 0 or await outbox.has_pending(session, platform)

    def startup_notes(self) -> list[str]:
        return [render.TINY_NOTE] if any(entry.kind == "tiny" for entry in self.ctx.registry) else []
