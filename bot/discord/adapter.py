"""The Discord chat: discord.py 2.x in front of the command service.

    chat = DiscordChat(service, settings)
    await chat.run()      # until cancelled; 2 when Discord refuses the token or an intent

Every interaction is deferred at once (Discord wants an answer within 3 s), then handled, and
answered with followups: the status message, or an error only its author sees. Results come by
the delivery loop: as a followup while the interaction's token lives (15 minutes, and only in
this process's memory), else as a channel message that mentions the user. The status message
is edited at `SDBOT_DISCORD_STATUS_EDIT_SECONDS` and deleted once the result is out.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord
import yarl
from discord import app_commands

from bot.discord import interface, outgoing
from bot.loops import DeliveryLoop, Postpone, StatusLoop, Unreachable, start_pause
from commands.frame.types import Attachment, Outgoing, Press, Reply, Request, StatusUpdate
from commands.jobs.render import size_text
from commands.service import CommandService
from config import Settings

log = logging.getLogger(__name__)

PLATFORM = "discord"
TOKEN_LIFETIME = 14 * 60  # interaction tokens last 15 minutes; keep a margin


@dataclass
class Followups:
    """An interaction whose token still lets us send and edit followups."""

    interaction: discord.Interaction
    since: float

    @property
    def alive(self) -> bool:
        return time.monotonic() - self.since < TOKEN_LIFETIME


class SdBotClient(discord.Client):
    def __init__(self, chat: DiscordChat, intents: discord.Intents):
        super().__init__(intents=intents)
        self.chat = chat
        self.tree = app_commands.CommandTree(self)

    async def setup_hook(self) -> None:
        await self.chat.setup()

    async def on_message(self, message: discord.Message) -> None:
        await self.chat.on_message(message)


class DiscordChat:
    def __init__(self, service: CommandService, settings: Settings):
        assert settings.discord_token is not None
        self.service = service
        self.settings = settings
        # discord.py reads both addresses from class attributes; one Discord client per process.
        discord.http.Route.BASE = settings.discord_api_base.rstrip("/")
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)
        intents = discord.Intents.default()
        intents.message_content = settings.discord_message_content
        self.client = SdBotClient(self, intents)
        self.deliveries = DeliveryLoop(
            service,
            PLATFORM,
            self._deliver,
            poll_seconds=settings.poll_seconds,
            after_delivered=self._remove_status,
            send_followup=self._send_followup,
        )
        self.statuses = StatusLoop(service, PLATFORM, self._edit_status, min_interval=lambda chat: settings.discord_status_edit_seconds)
        self._by_job: dict[int, Followups] = {}  # job id -> the interaction that asked for it
        self._by_message: dict[str, Followups] = {}  # our message id -> the interaction that sent it
        self._loops: list[asyncio.Task[None]] = []

    def wake(self) -> None:
        self.deliveries.wake()

    def model_names(self) -> list[str]:
        return [entry.display_name for entry in self.service.ctx.registry]

    # --- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> int:
        assert self.settings.discord_token is not None
        try:
            await self._login(self.settings.discord_token.get_secret_value())
            await self.client.connect(reconnect=True)  # reconnects by itself once connected
            return 0
        except discord.LoginFailure:
            log.error("Discord refused SDBOT_DISCORD_TOKEN. Copy the bot token from the Developer Portal (Bot → Reset Token).")
            return 2
        except discord.PrivilegedIntentsRequired:
            log.error(
                "Discord refused the Message Content intent. Enable it in the Developer Portal (Bot → Privileged "
                "Gateway Intents) or set SDBOT_DISCORD_MESSAGE_CONTENT=false."
            )
            return 2
        finally:
            for task in self._loops:
                task.cancel()
            await asyncio.gather(*self._loops, return_exceptions=True)
            await self.client.close()

    async def _login(self, token: str) -> None:
        """Log in, retrying while Discord can't be reached (a refused token raises at once)."""
        attempt = 0
        while True:
            try:
                await self.client.login(token)
                return
            except (aiohttp.ClientError, OSError, discord.DiscordServerError) as error:
                # login opened an HTTP session (and connector); close both, and let the next try open new ones
                await self.client.http.close()
                self.client.http.connector = discord.utils.MISSING
                pause = start_pause(attempt)
                log.warning("can't reach Discord at %s (%s); trying again in %ss", self.settings.discord_api_base, error, pause)
                await asyncio.sleep(pause)
                attempt += 1

    async def setup(self) -> None:
        """Commands, the buttons of every result ever sent, and the loops; before the gateway."""
        tree = self.client.tree
        for command in interface.build_commands(self.settings):
            tree.add_command(command)
        self.client.add_dynamic_items(interface.ActionButton)
        guild_ids = self.settings.discord_guild_ids
        if guild_ids:  # instant, for the guilds named; global commands take up to an hour to appear
            for guild_id in guild_ids:
                guild = discord.Object(int(guild_id))
                tree.copy_global_to(guild=guild)
                await tree.sync(guild=guild)
        else:
            await tree.sync()
        self._loops = [asyncio.create_task(self.deliveries.run()), asyncio.create_task(self.statuses.run())]
        log.info("Discord: commands synced %s", f"to guilds {', '.join(guild_ids)}" if guild_ids else "globally")

    # --- incoming -------------------------------------------------------------------------------

    async def on_command(
        self,
        interaction: discord.Interaction,
        *,
        text: str | None = None,
        options: dict | None = None,  # type: ignore[type-arg]
        attachments: Sequence[discord.Attachment | None] = (),
    ) -> None:
        """A slash command: its files (options left empty are None) go to the command layer in
        the order given, which it reads them in (the picture before its mask, image1 before image2)."""
        await interaction.response.defer(thinking=True)
        try:
            files = await self._read_attachments([file for file in attachments if file is not None])
        except ValueError as refused:
            await self._answer(interaction, [Reply(str(refused), kind="error", ephemeral=True)])
            return
        request = self._request(interaction, text=text, options=options, attachments=files)
        await self._answer(interaction, await self.service.handle(request))

    async def on_press(self, interaction: discord.Interaction, action: str) -> None:
        await interaction.response.defer(thinking=True)
        message = interaction.message
        if message is None:
            await self._answer(interaction, [Reply("That button doesn't work here.", kind="error", ephemeral=True)])
            return
        request = self._request(interaction, press=Press(str(message.id), action), message_id=str(message.id))
        await self._answer(interaction, await self.service.handle(request))

    async def on_remix(self, interaction: discord.Interaction, message: discord.Message, prompt: str) -> None:
        await interaction.response.defer(thinking=True)
        try:
            images = () if self._is_ours(message) else await self._images_of(message)
        except ValueError as refused:
            await self._answer(interaction, [Reply(str(refused), kind="error", ephemeral=True)])
            return
        if not self._is_ours(message) and not images:
            await self._answer(interaction, [Reply("That message has no image to work on.", kind="error", ephemeral=True)])
            return
        request = self._request(interaction, text=prompt, reply_to=str(message.id), reply_to_images=images)
        await self._answer(interaction, await self.service.handle(request))

    async def on_message(self, message: discord.Message) -> None:
        """A message that mentions the bot is a request, with its files in order (`@sdbot /train lora
        foxy` and ten pictures); Discord shows the bot such messages' content even without the
        Message Content intent. With that intent, a text reply to one of our results remixes it."""
        if message.author.bot or self.client.user is None:
            return
        replied = message.reference.resolved if message.reference is not None else None
        replied = replied if isinstance(replied, discord.Message) else None
        if self.client.user.id in message.raw_mentions:
            await self._on_mention(message, replied)
        elif self.settings.discord_message_content and replied is not None and self._is_ours(replied):
            request = self._message_request(message, text=message.content, reply_to=str(replied.id))
            await self._answer_message(message, await self.service.handle(request))

    async def _on_mention(self, message: discord.Message, replied: discord.Message | None) -> None:
        assert self.client.user is not None
        text = re.sub(rf"<@!?{self.client.user.id}>", " ", message.content).strip()
        try:
            files = await self._read_attachments(message.attachments)
            images = await self._images_of(replied) if replied is not None and not self._is_ours(replied) else ()
        except ValueError as refused:
            await self._answer_message(message, [Reply(str(refused), kind="error")])
            return
        request = self._message_request(
            message, text=text, attachments=files, reply_to=str(replied.id) if replied else None, reply_to_images=images
        )
        await self._answer_message(message, await self.service.handle(request))

    def _message_request(self, message: discord.Message, **fields) -> Request:  # type: ignore[no-untyped-def]
        return Request(
            platform=PLATFORM,
            user_id=str(message.author.id),
            chat_id=str(message.channel.id),
            user_name=message.author.name,
            message_id=str(message.id),
            age_restricted=_age_restricted(message.channel),
            platform_roles=_guild_roles(message.author),
            private=message.guild is None,
            place_admin=_manages(getattr(message.author, "guild_permissions", None)),
            **fields,
        )

    async def _answer_message(self, message: discord.Message, replies: list[Reply]) -> None:
        """Answer a person's message with replies to it (in the channel: nothing is ephemeral there)."""
        for reply in replies:
            try:
                for piece in outgoing.leading_texts(reply):
                    await message.reply(piece)
                kwargs = await asyncio.to_thread(outgoing.message_kwargs, reply, self._upload_limit(message.guild))
                sent = await message.reply(**kwargs)
            except discord.HTTPException as error:
                log.warning("could not answer message %s: %s", message.id, error)
                continue
            await self._recorded(reply, sent, None)

    def _request(self, interaction: discord.Interaction, **fields) -> Request:  # type: ignore[no-untyped-def]
        fields.setdefault("message_id", str(interaction.id))
        return Request(
            platform=PLATFORM,
            user_id=str(interaction.user.id),
            chat_id=str(interaction.channel_id),
            user_name=interaction.user.name,
            age_restricted=_age_restricted(interaction.channel),
            platform_roles=_guild_roles(interaction.user),
            private=True,  # interaction answers can be ephemeral
            place_admin=interaction.guild_id is not None and _manages(interaction.permissions),
            **fields,
        )

    def _is_ours(self, message: discord.Message) -> bool:
        return self.client.user is not None and message.author.id == self.client.user.id

    def _too_big(self, attachment: discord.Attachment) -> str | None:
        limit = self.settings.max_upload_bytes
        name = attachment.filename.lower()
        if name.endswith(".safetensors"):  # a LoRA or embedding (commands.library.assets)
            limit = self.settings.max_asset_bytes
            if attachment.size > limit:
                return f"`{attachment.filename}` is {size_text(attachment.size)}; uploads may be up to {size_text(limit)}."
        if name.endswith(".zip") and attachment.size > limit:  # a /train picture set (commands.training.data)
            return (
                f"`{attachment.filename}` is {size_text(attachment.size)}; I take files up to {size_text(limit)}. "
                "Split it into smaller zips."
            )
        if attachment.size > limit:
            return (
                f"`{attachment.filename}` is {size_text(attachment.size)}; I take images up to {size_text(limit)}. "
                "Send a smaller or more compressed image."
            )
        return None

    async def _read_attachments(self, files: Sequence[discord.Attachment]) -> tuple[Attachment, ...]:
        """The files, in order; a ValueError saying why when one is too big (checked for all before
        any is fetched) or can't be fetched."""
        for file in files:
            refused = self._too_big(file)
            if refused:
                raise ValueError(refused)
        attachments: tuple[Attachment, ...] = ()
        for file in files:
            try:
                attachments += (Attachment(file.filename, await file.read(), file.content_type),)
            except discord.HTTPException as error:
                log.warning("could not download attachment %s: %s", file.filename, error)
                raise ValueError(f"I couldn't download `{file.filename}` from Discord. Please try again.") from None
        return attachments

    async def _images_of(self, message: discord.Message) -> tuple[Attachment, ...]:
        """The first picture or video of a message replied to (a video: for /video2video)."""
        for attachment in message.attachments:
            if (attachment.content_type or "").startswith(("image/", "video/")):
                refused = self._too_big(attachment)
                if refused:
                    raise ValueError(refused)
                return (Attachment(attachment.filename, await attachment.read(), attachment.content_type),)
        return ()

    # --- outgoing -------------------------------------------------------------------------------

    async def _answer(self, interaction: discord.Interaction, replies: list[Reply]) -> None:
        """Answer a deferred interaction. An error replaces the public "thinking…" message with
        one only its author sees."""
        limit = interaction.filesize_limit
        for reply in replies or [Reply("Done.")]:
            try:
                if reply.ephemeral:
                    if interaction.response.is_done():
                        await interaction.delete_original_response()
                    if reply.documents or reply.images:  # files only the asker gets (an admin's review of originals)
                        kwargs = await asyncio.to_thread(outgoing.message_kwargs, reply, limit)
                        await interaction.followup.send(ephemeral=True, **kwargs)
                    else:
                        await interaction.followup.send(reply.text[:2000], ephemeral=True)
                    continue
                for piece in outgoing.leading_texts(reply):
                    await interaction.followup.send(piece)
                kwargs = await asyncio.to_thread(outgoing.message_kwargs, reply, limit)  # image work off the loop
                sent = await interaction.followup.send(wait=True, **kwargs)
            except discord.HTTPException as error:
                log.warning("could not answer interaction %s: %s", interaction.id, error)
                continue
            await self._recorded(reply, sent, interaction)

    async def _recorded(self, reply: Reply, sent: discord.Message, interaction: discord.Interaction | None) -> None:
        if interaction is not None:  # before recording: the job's result may be delivered right after
            self._forget_expired()
            followups = Followups(interaction, time.monotonic())
            self._by_message[str(sent.id)] = followups
            if reply.kind == "status" and reply.job_id is not None:
                self._by_job[reply.job_id] = followups
        await self.service.sent(PLATFORM, str(sent.channel.id), str(sent.id), reply)
        if reply.kind == "status":
            self.statuses.showing(str(sent.id), reply.text)

    def _forget_expired(self) -> None:
        """Drop interactions whose token has run out (they can no longer send or edit)."""
        self._by_job = {job: followups for job, followups in self._by_job.items() if followups.alive}
        self._by_message = {message: followups for message, followups in self._by_message.items() if followups.alive}

    async def _deliver(self, item: Outgoing) -> str:
        job_id = item.reply.job_id
        # A training run's sample comes before its result: the result keeps the interaction.
        take = self._by_job.get if item.reply.kind == "sample" else self._by_job.pop
        followups = take(job_id, None) if job_id is not None else None
        try:
            if followups is not None and followups.alive:
                interaction = followups.interaction
                kwargs = await asyncio.to_thread(outgoing.message_kwargs, item.reply, interaction.filesize_limit)
                sent = await interaction.followup.send(wait=True, **kwargs)
                self._by_message[str(sent.id)] = followups
            else:  # the token is gone (a long job, or a restart): post in the channel, naming the user
                channel = self.client.get_partial_messageable(int(item.chat_id))
                known = self.client.get_channel(int(item.chat_id))
                limit = self._upload_limit(getattr(known, "guild", None))
                kwargs = await asyncio.to_thread(outgoing.message_kwargs, item.reply, limit, mention=item.user_id)
                if item.reply_to and item.reply_to.isdigit():
                    # a reply to the message that asked (for a slash command, the id is the
                    # interaction's, no message: Discord then sends it as a plain message)
                    kwargs["reference"] = discord.MessageReference(
                        message_id=int(item.reply_to), channel_id=int(item.chat_id), fail_if_not_exists=False
                    )
                sent = await channel.send(**kwargs)
        except discord.RateLimited as error:
            raise Postpone(error.retry_after) from error
        except discord.DiscordServerError as error:
            raise Unreachable(str(error)) from error
        except (TimeoutError, OSError) as error:  # aiohttp's connection errors are OSErrors
            raise Unreachable(str(error)) from error
        return str(sent.id)

    async def _send_followup(self, item: Outgoing, followup: Reply, message_id: str) -> str:
        """A control map after its result: a channel message replying to the result."""
        channel = self.client.get_partial_messageable(int(item.chat_id))
        known = self.client.get_channel(int(item.chat_id))
        kwargs = await asyncio.to_thread(outgoing.message_kwargs, followup, self._upload_limit(getattr(known, "guild", None)))
        reference = discord.MessageReference(message_id=int(message_id), channel_id=int(item.chat_id), fail_if_not_exists=False)
        sent = await channel.send(reference=reference, **kwargs)
        return str(sent.id)

    async def _remove_status(self, item: Outgoing, message_id: str) -> None:
        if not item.status_message_id:
            return
        followups = self._by_message.pop(item.status_message_id, None)
        if followups is not None and followups.alive:
            await followups.interaction.followup.delete_message(int(item.status_message_id))
        else:
            channel = self.client.get_partial_messageable(int(item.chat_id))
            await channel.get_partial_message(int(item.status_message_id)).delete()

    async def _edit_status(self, update: StatusUpdate) -> None:
        """The status's new text, and its live preview as the message's attachment when there is a
        new one (replacing the last; text alone leaves the attachment as it is)."""
        followups = self._by_message.get(update.message_id)
        changes: dict[str, Any] = {"content": update.text}
        if update.preview is not None:
            changes["attachments"] = [discord.File(io.BytesIO(update.preview), filename=f"preview-{update.job_id}.jpg")]
        try:
            if followups is not None and followups.alive:
                await followups.interaction.followup.edit_message(int(update.message_id), **changes)
            else:
                channel = self.client.get_partial_messageable(int(update.chat_id))
                await channel.get_partial_message(int(update.message_id)).edit(**changes)
        except discord.RateLimited as error:
            raise Postpone(error.retry_after) from error

    def _upload_limit(self, guild: discord.Guild | None) -> int:
        return guild.filesize_limit if guild is not None else outgoing.DEFAULT_UPLOAD_LIMIT


def _manages(permissions: discord.Permissions | None) -> bool:
    """Whether these permissions make someone an admin of the channel's /place settings."""
    return permissions is not None and (permissions.manage_guild or permissions.manage_channels)


def _guild_roles(user: discord.User | discord.Member) -> tuple[str, ...]:
    """The ids of the member's guild roles (SDBOT_ROLE_MAP maps them); none outside a guild."""
    return tuple(str(role.id) for role in getattr(user, "roles", ()) if not role.is_default())


def _age_restricted(channel: object) -> bool:
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False
