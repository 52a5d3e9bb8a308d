"""What a place does with the pictures the safety classifier flags (generation.imaging.safety
scores every output; `commands.jobs.safety.policy_of` says what the place does at or over its
threshold):

- allow: sent as they are.
- spoiler: sent hidden (Discord `SPOILER_` files, Telegram `has_spoiler`); one tap shows them.
- blur: a blurred copy is sent (a clip: its blurred poster, no video); the original is not
  sent there, not even as the PNG file.
- block: a grey placeholder of the same size is sent in its place, with a line saying why;
  admins can look at it with `/admin review JOB`.

The decision is recorded on each output (`safety_action`) when its result is delivered. A
picture under the threshold, or with no score (no classifier configured), is always allowed.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageFilter
from sqlalchemy.ext.asyncio import AsyncSession

from commands.frame.context import Context
from commands.frame.types import ImageFile, Reply
from config.settings import Settings
from storage import places
from storage.tables import Job, JobOutput

BLUR_FRACTION = 1 / 12  # Gaussian radius as a share of the longer side: nothing recognisable is left
PLACEHOLDER = (128, 128, 128)


async def place_policy(ctx: Context, session: AsyncSession, job: Job, platform: str, chat_id: str) -> Policy:
    """The policy of the place a job's pictures go to (age-restricted: where the job was asked)."""
    age_restricted = bool((job.params or {}).get("age_restricted"))
    return policy_of(ctx.settings, await places.settings_of(session, platform, chat_id), age_restricted)


def flagged(job: Job, policy: Policy) -> list[JobOutput]:
    return [out for out in job.outputs if out.safety_score is not None and out.safety_score >= policy.threshold]


async def withheld(ctx: Context, session: AsyncSession, job: Job, platform: str, chat_id: str) -> set[int]:
    """Indices of the job's pictures this place must not get as originals (blurred or blocked here)."""
    policy = await place_policy(ctx, session, job, platform, chat_id)
    return {out.index for out in flagged(job, policy)} if policy.action in ("blur", "block") else set()


async def shield(ctx: Context, session: AsyncSession, job: Job, reply: Reply, platform: str, chat_id: str, *, record: bool = True) -> Reply:
    """`reply` (a result or one of its pictures) as the place's policy has it, and, with `record`,
    the decision written on each output."""
    policy = await place_policy(ctx, session, job, platform, chat_id)
    over = flagged(job, policy)
    if record and any(out.safety_score is not None for out in job.outputs):
        for out in job.outputs:
            out.safety_action = policy.action if out in over else "allow"
    # A clip's poster stands for all its frames, a /compare's grid for all its cells.
    whole = reply.video is not None or (job.kind == "compare" and reply.kind == "result")
    shown = {out.index for out in job.outputs} if whole else {image.index for image in reply.images}
    hit = [out for out in over if out.index in shown]
    if not hit or policy.action == "allow":
        return reply
    top = max(out.safety_score or 0.0 for out in hit)
    why = f"score {top:.2f}, at or over {policy.threshold:g}: {policy.source}"
    if policy.action == "spoiler":
        return dataclasses.replace(reply, spoiler=True, text=f"{reply.text}\n🙈 Behind a spoiler by this chat's safety policy ({why}).")
    indices = {out.index for out in hit}
    make = _blurred if policy.action == "blur" else _placeholder
    images = tuple(make(ctx, image) if image.index in indices or whole else image for image in reply.images)
    if policy.action == "blur":
        note = f"🌫 Blurred by this chat's safety policy ({why}); the original isn't sent here."
    else:
        which = ", ".join(str(i + 1) for i in sorted(indices))
        note = (
            f"⛔ Withheld by this chat's safety policy ({why}): {'picture' if len(indices) == 1 else 'pictures'} {which}. "
            f"Admins can review it with `/admin review {job.id}`."
        )
    return dataclasses.replace(reply, images=images, video=None, preview=None, originals=False, text=f"{reply.text}\n{note}")


def _blurred(ctx: Context, image: ImageFile) -> ImageFile:
    with Image.open(image.path) as picture:
        radius = max(picture.size) * BLUR_FRACTION
        out = picture.convert("RGB").filter(ImageFilter.GaussianBlur(radius))
    return _stored(ctx, out, image)


def _placeholder(ctx: Context, image: ImageFile) -> ImageFile:
    return _stored(ctx, Image.new("RGB", (image.width, image.height), PLACEHOLDER), image)


def _stored(ctx: Context, picture: Image.Image, like: ImageFile) -> ImageFile:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")  # no parameters: nothing of the original travels with it
    key = ctx.blobs.put(buffer.getvalue(), "png")
    return dataclasses.replace(like, path=ctx.blobs.path(key))


@dataclass(frozen=True)
class Policy:
    """What a place does with a picture the safety classifier scores at or over `threshold`."""

    action: str  # allow | spoiler | blur | block
    threshold: float
    source: str  # words for where the action comes from


def policy_of(settings: Settings, place: dict[str, Any], age_restricted: bool) -> Policy:
    threshold = float(place.get("threshold", settings.safety_threshold))
    if place.get("nsfw"):
        return Policy(str(place["nsfw"]), threshold, "this chat's setting")
    if age_restricted:
        return Policy("allow", threshold, "an age-restricted channel's default")
    return Policy(settings.safety_policy, threshold, "the default (SDBOT_SAFETY_POLICY)")
