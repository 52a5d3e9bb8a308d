"""Uploaded LoRAs, embeddings and hypernetworks: /lora, /loras, /embedding, /embeddings,
/hypernetwork, /hypernetworks.

    /lora upload [NAME]          with the .safetensors file attached (Telegram: as the document's caption)
    /loras                       yours and the shared ones
    /lora info|delete NAME       /lora rename OLD NEW       /lora share|unshare NAME
    (the same for /embedding and /embeddings, /hypernetwork and /hypernetworks)

Every file is untrusted: `generation.assets.files` reads its header with plain Python and refuses
anything that is not a LoRA / LyCORIS / embedding / hypernetwork safetensors file before it is
stored; nothing is unpickled, and nothing is loaded until a job uses it. An A1111 hypernetwork
`.pt` is read by a pickle reader that resolves only tensors in dicts (`hypernetwork_files`) and
stored as `.safetensors`. Stored content-addressed, owned by the
uploader, private until shared. Admins may delete or unshare anyone's.
"""

from __future__ import annotations

from commands.frame.context import Context
from commands.frame.errors import Refused, UserError
from commands.frame.offload import offload
from commands.frame.types import DocumentFile, Reply, Request
from commands.jobs import render
from commands.jobs.admission import asker
from commands.jobs.model_fit import KIND_LABELS as KINDS
from commands.jobs.model_fit import fit_problem, stored_misfit
from config.models import ARCHITECTURE_NAMES
from generation.assets.files import (
    AssetError,
    prepare_upload,
    safe_name_from_filename,
    valid_asset_name,
)
from generation.assets.fit import claim_note, left_out
from generation.assets.safetensors_header import addnet_hash
from generation.models.files import describe_model, model_shapes
from storage import assets, queue
from storage.tables import Asset


async def lora_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    return await _asset_command(ctx, request, args, "lora")


async def embedding_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    return await _asset_command(ctx, request, args, "embedding")


async def hypernetwork_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    return await _asset_command(ctx, request, args, "hypernetwork")


async def list_hypernetworks(ctx: Context, request: Request, args: str) -> list[Reply]:
    return await _list(ctx, request, "hypernetwork")


async def list_loras(ctx: Context, request: Request, args: str) -> list[Reply]:
    return await _list(ctx, request, "lora")


async def list_embeddings(ctx: Context, request: Request, args: str) -> list[Reply]:
    return await _list(ctx, request, "embedding")


async def _asset_command(ctx: Context, request: Request, args: str, kind: str) -> list[Reply]:
    verb, *words = args.split() or ["list"]
    verb = verb.lower()
    if verb == "upload":
        return await _upload(ctx, request, kind, words[0] if words else None)
    if verb == "list":
        return await _list(ctx, request, kind)
    if verb == "download" and len(words) == 1:
        return await _download(ctx, request, kind, words[0])
    if verb in ("info", "delete", "share", "unshare") and len(words) == 1:
        return await _manage(ctx, request, kind, verb, words[0])
    if verb == "rename" and len(words) == 2:
        return await _rename(ctx, request, kind, words[0], words[1])
    raise UserError(
        f"Use `/{kind} upload [NAME]` with the {'.pt or ' if kind == 'hypernetwork' else ''}.safetensors file attached, `/{kind}s` to list, or "
        f"`/{kind} info|download|delete|share|unshare NAME`, `/{kind} rename OLD NEW`."
    )


async def _upload(ctx: Context, request: Request, kind: str, name: str | None) -> list[Reply]:
    label = KINDS[kind]
    if not request.attachments:
        suffix = "A1111's .pt, or .safetensors" if kind == "hypernetwork" else ".safetensors"
        raise UserError(
            f"Attach the {label} file ({suffix}) to `/{kind} upload [NAME]`; on Telegram send it as a file with the command as its caption."
        )
    file = request.attachments[0]
    limit = ctx.settings.max_asset_bytes
    if len(file.data) > limit:
        raise UserError(f"`{file.filename}` is {render.size_text(len(file.data))}; {label}s may be up to {render.size_text(limit)}.")
    try:  # off the event loop: a file of hundreds of MiB is hashed whole
        info, data = await offload(prepare_upload, file.data, file.filename, kind=kind, max_bytes=limit)  # type: ignore[arg-type]
    except AssetError as error:
        raise UserError(f"I didn't store `{file.filename}`: {error}") from None
    name = (name or safe_name_from_filename(file.filename)).lower()
    if not valid_asset_name(name):
        raise UserError(f"`{name}` can't be a name: use letters, digits, `_`, `-` and `.`, up to 64 characters.")
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
        model = ctx.registry.get(user.settings.get("model")) or ctx.registry.default
        problem = fit_problem(info, model)
        if problem:
            raise UserError(
                f"I didn't store `{file.filename}`: it doesn't fit your model `{model.display_name}`; {problem} "
                "To use it with another model, pick that one first (`/model NAME`; `/models` lists them), then upload it."
            )
        if await assets.find_own(session, user.id, kind, name):
            raise UserError(f"You already have a {label} named `{name}`. Delete it first, or upload with another name.")
        used, quota = await assets.bytes_used(session, user.id), ctx.limits(request).storage_bytes
        if quota is not None and used + info.size > quota:
            raise Refused(
                "storage",
                f"That would use {render.size_text(used + info.size)} of your {render.size_text(quota)} for uploads. "
                f"Delete one with `/{kind} delete NAME` first.",
            )
        key = await offload(ctx.blobs.put, data, "st")  # short blob extensions; the header check made it safetensors
        short_hash = await offload(addnet_hash, data)
        await queue.record_blob(session, key, info.size, "application/octet-stream", None, None)
        more = {"widths": list(info.widths)} if info.widths else {}
        fields = info.stored_fields(triggers=list(info.triggers), title=info.title, addnet_hash=short_hash, **more)
        asset = await assets.add(session, user.id, kind, name, blob_key=key, **fields)
    shapes = model_shapes(model)
    words = describe_model(model)
    lines = [f"Saved the {label} `{asset.name}`, private to you.", _describe(asset)]
    dropped = left_out(info.layers, shapes) if shapes is not None and info.kind == "lora" else []
    if info.kind == "hypernetwork":
        lines.append(f"It fits your model `{model.display_name}` ({words}): it changes the inputs of its attention layers.")
    elif dropped:
        lines.append(
            f"It fits your model `{model.display_name}` ({words}): {len(dropped)} of its {len(info.layers)} layers are FLUX.1 "
            f"layers this model doesn't have (such as `{dropped[0]}`), and are left out; the others are there, with their shapes."
        )
    elif shapes is not None:
        lines.append(f"It fits your model `{model.display_name}` ({words}): every layer it changes is there, with its shape.")
    note = claim_note(
        info.claim,
        info.architecture,
        fits=True,
        model=model.display_name,
        model_words=words,
        model_architecture=shapes.architecture if shapes else model.family,
    )
    lines += [note] if note else []
    lines.append(_usage(asset))
    return [Reply("\n".join(lines))]


def _usage(asset: Asset) -> str:
    if asset.kind == "lora":
        return f"Use it with `<lora:{asset.name}:0.8>` in a prompt (or `--lora {asset.name}:0.8`)."
    if asset.kind == "hypernetwork":
        return f"Use it with `<hypernet:{asset.name}:1>` in a prompt (SD 1.x and 2.x models)."
    return f"Write `{asset.name}` in a prompt or negative prompt to use it."


def _describe(asset: Asset) -> str:
    made_for = ARCHITECTURE_NAMES.get(asset.architecture or "") or asset.info.get("made_for") or "a model its layers don't name"
    parts = [asset.format, f"for {made_for}"]
    if asset.rank:
        parts.append(f"rank {asset.rank}")
    if asset.info.get("vectors"):
        parts.append(f"{asset.info['vectors']} vectors")
    if asset.info.get("widths"):
        parts.append(f"widths {', '.join(map(str, asset.info['widths']))}")
    parts += [render.size_text(asset.size), f"sha256 {asset.sha256[:12]}", "shared" if asset.shared else "private"]
    text = " · ".join(parts)
    if asset.info.get("triggers"):
        text += "\nTrigger words from its training data: " + ", ".join(asset.info["triggers"])
    return text


async def _list(ctx: Context, request: Request, kind: str) -> list[Reply]:
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
        found = await assets.usable(session, user.id, kind)
        own = [a for a in found if a.owner_id == user.id]
        shared = [a for a in found if a.owner_id != user.id]
        used = await assets.bytes_used(session, user.id)
        model = ctx.registry.get(user.settings.get("model")) or ctx.registry.default
    label = KINDS[kind]

    def line(asset: Asset) -> str:
        # Files are kept when a person changes models; those that don't fit this one say so.
        fits = "" if stored_misfit(ctx, asset, model) is None else f" (doesn't fit your model `{model.display_name}`)"
        return f"• {asset.name} — {_describe(asset).splitlines()[0]}{fits}"

    quota = ctx.limits(request).storage_bytes
    of = f" of {render.size_text(quota)}" if quota is not None else ""
    lines = [f"Your {label}s ({render.size_text(used)}{of}):"]
    lines += [line(a) for a in own] or [f"none yet: `/{kind} upload NAME` with the file."]
    if shared:
        lines += ["", f"Shared {label}s:"] + [line(a) for a in shared]
    return [Reply("\n".join(lines))]


async def _manage(ctx: Context, request: Request, kind: str, verb: str, name: str) -> list[Reply]:
    label = KINDS[kind]
    admin = ctx.is_admin(request)
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
        if verb == "info":
            asset = await assets.find_usable(session, user.id, kind, name)
        else:
            asset = await assets.find_own(session, user.id, kind, name)
            if asset is None and admin and verb in ("delete", "unshare"):
                found = await assets.find_any(session, kind, name)
                asset = found[0] if len(found) == 1 else None
                if len(found) > 1:
                    raise UserError(f"{len(found)} people have a {label} named `{name}`; an admin must act on one at a time.")
        if asset is None:
            raise UserError(f"I don't know a {label} of yours named `{name}`. `/{kind}s` lists them.")
        if verb == "info":
            return [Reply(f"{label} `{asset.name}`\n{_describe(asset)}\n{_usage(asset)}")]
        if verb == "delete":
            await session.delete(asset)
            return [Reply(f"Deleted the {label} `{asset.name}`. Jobs already queued with it still run.")]
        asset.shared = verb == "share"
        state = "shared: everyone can use it" if asset.shared else "private again"
        return [Reply(f"The {label} `{asset.name}` is {state}.")]


async def _download(ctx: Context, request: Request, kind: str, name: str) -> list[Reply]:
    """The file itself (yours, or a shared one), as A1111, ComfyUI and diffusers load it."""
    label = KINDS[kind]
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
        asset = await assets.find_usable(session, user.id, kind, name)
        if asset is None:
            raise UserError(f"I don't know a {label} of yours named `{name}`. `/{kind}s` lists them.")
    document = DocumentFile(ctx.blobs.path(asset.blob_key), f"{asset.name}.safetensors", asset.size)
    text = f"The {label} `{asset.name}`: {_describe(asset).splitlines()[0]}. It loads in A1111, ComfyUI and diffusers."
    return [Reply(text, documents=(document,))]


async def _rename(ctx: Context, request: Request, kind: str, old: str, new: str) -> list[Reply]:
    label, new = KINDS[kind], new.lower()
    if not valid_asset_name(new):
        raise UserError(f"`{new}` can't be a name: use letters, digits, `_`, `-` and `.`, up to 64 characters.")
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
        asset = await assets.find_own(session, user.id, kind, old)
        if asset is None:
            raise UserError(f"I don't know a {label} of yours named `{old}`. `/{kind}s` lists them.")
        if await assets.find_own(session, user.id, kind, new):
            raise UserError(f"You already have a {label} named `{new}`.")
        asset.name = new
    return [Reply(f"Renamed the {label} `{old}` to `{new}`. {_usage(asset)}")]
