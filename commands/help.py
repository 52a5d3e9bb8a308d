"""/help: the command reference, with this installation's limits, samplers and models (`/help COMMAND`
and the menus come from `commands.registry`)."""

from __future__ import annotations

from commands.frame.context import Context
from commands.jobs import render
from commands.jobs.options import IMAGINE_OPTIONS
from commands.library.models import family_lines
from commands.pictures.edit import edits, edits_masked
from config import Settings
from config.models import TINY
from generation.control.catalog import has_tiny_controlnets
from generation.models.families import FAMILIES


def available_methods(s: Settings) -> dict[str, list[str]]:
    """What this installation can do, from its config alone (no model is loaded to find out)."""
    return {
        "upscale": ["lanczos", *(["esrgan"] if s.upscalers else []), "hires", "latent"],
        "upscalers": list(s.upscalers),
        "face_restorers": list(s.face_restorers),
        "select": ["clipseg"] if s.segmenter else [],
        "enhance": ["text model"] if s.enhancer else [],
        "describe": ["caption"] + (["clip"] if s.describe_clip else []) if s.captioner else [],
    }


def help_text(ctx: Context) -> str:
    s = ctx.settings
    models = ", ".join(f"{entry.display_name}{' (default)' if entry is ctx.registry.default else ''}" for entry in ctx.registry)
    methods = available_methods(s)
    tiny = ctx.registry.default.source == TINY  # its built-in Pix2Pix model serves /edit
    editors = [entry.display_name for entry in ctx.registry if edits(entry)]  # models that edit by instruction
    masked_editors = [entry.display_name for entry in ctx.registry if edits_masked(entry)]  # ... inside a mask too
    builtin_controlnets = any(has_tiny_controlnets(entry) for entry in ctx.registry)  # tiny, tiny-sd3, tiny-qwen, tiny-zimage
    default_method = s.default_upscale_method
    if default_method == "auto":
        default_method = "esrgan" if s.upscalers else "lanczos"
    lines = [
        "**Commands**",
        "/imagine <prompt> [options] — draw. Attach an image (or reply to one) to start from it.",
        "Reply to one of my pictures with text to remix it with that prompt.",
        "Buttons: U1…U4 show image i alone · V1…V4 vary image i · Reroll draws again with a new seed.",
        "Under one image: Upscale 2x/4x · Vary (Subtle)/(Strong) · Zoom Out 1.5x/2x · ⬅ ➡ ⬆ ⬇ (pan) · Face fix · Detail.",
        "",
        "**Edit any picture** (reply to it with the command, or attach it):",
        f"/upscale 2|4 [--method {'|'.join(methods['upscale'])}] — default {default_method}"
        + (f"; --upscaler {'|'.join(methods['upscalers'])}" if methods["upscalers"] else " (esrgan: no model configured)"),
        "/vary subtle|strong [new prompt] · /zoom 1.5|2 [prompt] (zoom out) · /pan left|right|up|down [prompt]",
        "/inpaint <prompt> --box x,y,w,h (pixels or %) | a mask attached (white = repaint)"
        + (" | --select <words>" if methods["select"] else " (--select: no segmentation model configured)")
        + " · --blur N (the feather reaches N px past the mask; default 10) · --only-masked · --padding N",
        "/facefix"
        + (
            f" [--model {'|'.join(methods['face_restorers'])}]"
            if methods["face_restorers"]
            else " — not available: no face-restoration model configured (SDBOT_FACE_RESTORERS)"
        ),
        "/detail [face|hand|person] [prompt] — repaint them at full resolution (ADetailer; --detail-strength 0.4); "
        "`--detail face` on /imagine does it as it draws" + ("" if s.hand_detector else " (hand: no detector configured)"),
        "/control canny|depth|openpose|lineart|lineart_anime|softedge|scribble|tile <prompt> — steered by the picture's "
        "map (--control-weight 0–2 · --start/--end · --control-mode balanced|prompt|control · --pre none · "
        "--control depth:0.5 for a second); /control qr <text> <prompt> hides a QR code"
        + ("" if builtin_controlnets or s.controlnets else " — not available: no ControlNet configured (SDBOT_CONTROLNETS)"),
        "/edit <instruction> — change the picture by instruction"
        + (
            f" with {', '.join(f'`{name}`' for name in editors)} (attach more pictures as references where the model "
            "takes them: picture 1 is edited), else Instruct Pix2Pix"
            if editors
            else " (Instruct Pix2Pix)"
        )
        + f" [--image-cfg {s.instruct_image_cfg:g}]"
        + ("" if tiny or s.instruct_model or editors else " — not available: no edit model configured (SDBOT_INSTRUCT_MODEL)")
        + (
            f"; inside a region only (--box x,y,w,h | a mask attached last | --select <words> · --blur N) with "
            f"{', '.join(f'`{name}`' for name in masked_editors)}"
            if masked_editors
            else ""
        ),
        "These take the drawing options too (--strength, --steps, --seed, --no …).",
        "",
        "**Clips** (MP4s that play in the chat)",
        f"/animate <prompt> [--frames {s.min_frames}–{s.max_frames} (default {s.default_frames})] [--fps 1–{s.max_fps} "
        f"(default {s.default_fps})] [--motion {'|'.join(['tiny'] if tiny else list(s.motion_adapters)) or 'NAME'}] "
        f"[--camera {'|'.join(['tiny-zoom'] if tiny else list(s.motion_loras)) or 'NAME'}[:weight]] [--loop] — AnimateDiff; "
        f"clips past {s.animate_context_frames} frames go in overlapping windows. Frames up to {s.max_clip_pixels:,} pixels."
        + ("" if tiny or s.motion_adapters else " — not available: no motion adapter configured (SDBOT_MOTION_ADAPTERS)"),
        f"/video2video <prompt> [--strength 0.01–1 (default {s.video2video_strength:g})] [--fps N] [--frames N] — reply to "
        f"a video, a GIF or one of my clips (or attach one; up to {s.max_video_bytes / 2**20:.0f} MiB and "
        f"{s.max_video_seconds:g} s). A plain reply with a prompt to one of my clips does the same.",
        f'/deforum "0: a forest, 24: a city" [--frames 2–{s.max_deforum_frames}] [--zoom "0:(1.02)"] [--angle …] [--tx …] '
        f"[--ty …] [--strength X or a schedule (default {s.deforum_strength:g})] [--color off] — Deforum's img2img loop: "
        "keyframes `frame:(value)`, expressions of t such as `0:(1 + 0.01*sin(t/5))`; reply to a picture to start from it.",
        "Buttons under a clip: Reroll · Longer (continues from its last frame) · Upscale 2x (every frame) · Remix "
        "(restyles it). `/frames <job> [png|gif|mp4]` sends its frames as a ZIP of PNGs, or the GIF or MP4 as a file.",
        "",
        "**Prompts**",
        "/describe — reply to a picture (or attach one): its prompt and settings when the file carries them "
        "(A1111, ComfyUI, NovelAI, ours; on Telegram send it as a file), with an Imagine this button"
        + (
            " — else a caption model suggests prompts."
            if methods["describe"]
            else " (pictures without settings: no caption model configured, SDBOT_CAPTIONER)."
        ),
        "/enhance <a few words> [--n 1–4] [--seed N] — detailed prompts written by a text model, each with an Imagine button"
        + ("" if methods["enhance"] else " — not available: no text model configured (SDBOT_ENHANCER)."),
        "/styles — the styles; `--style NAME` (several: `--style anime,cinematic`, applied in order) wraps your prompt "
        "in one · `/style save NAME <template with {prompt}> --no <negative>` · `/style delete NAME`",
        "Wildcards: {red|green|blue} picks one; __NAME__ picks a line of a list (/wildcard list, "
        "/wildcard add NAME a | b | c). Each image of a batch picks from its own seed; the picks are in its parameters.",
        "Regions: `--regions cols|rows|1,2|1,2;1,1` with the prompt's parts split by BREAK: "
        "`a castle BREAK a dragon --regions cols` puts the castle left and the dragon right. "
        "`common ADDCOMM` goes into every part; `base ADDBASE` is mixed in everywhere by `--base-ratio` (default 0.2). "
        "A remix keeps the picture's regions; `--regions off` drops them.",
        "",
        "**Your LoRAs and embeddings**",
        f"/lora upload [NAME] with the .safetensors file attached (up to {s.max_asset_bytes / 2**20:.0f} MiB; "
        f"{_storage_words(s)}) · /loras · /lora info|delete|share|unshare NAME · "
        "/lora rename OLD NEW — the same for /embedding. Files are checked before they are stored; pickles "
        "(.ckpt, .pt, .bin) are refused. Use a LoRA with <lora:NAME:0.8> in the prompt (or --lora NAME:0.8); "
        "an embedding by writing its name. Private until you share it. `/lora download NAME` sends the file.",
        f"/train lora|loha|lokr|dreambooth|embedding NAME with {s.train_min_images}–{s.train_max_images} pictures "
        "attached (or a .zip, `.txt` captions beside them) — train your own; it is yours and in /loras when it ends. "
        f"--steps (up to {s.train_max_steps}; {s.train_daily_steps} a day) · --rank · --alpha · --lr · --resolution · "
        "--batch · --seed · --trigger · --captions auto|none · --sample-every · --text-encoder on|off · --snr-gamma; "
        'DreamBooth: --class "a dog" --class-images --prior-weight; embedding: --vectors --init-word. '
        "`/train preview …` shows the captions first · `/train status` · `/cancel` stops a run and keeps what it learned. "
        "Drawing jobs go first: a run pauses for them and goes on where it was.",
        "",
        "**Admins**: `/model add NAME SOURCE` — SOURCE a diffusers folder, a Hub id, or a .safetensors checkpoint "
        "with `--config FOLDER` (its component configs), or a transformer file of a DiT family (.safetensors or .gguf) with "
        f"`--config FOLDER` (the rest of the pipeline); also --arch {'|'.join(f.id for f in FAMILIES)}, --size, --clip-skip, --vae, "
        "--description · `/model remove NAME [--force]`. No restart: every bot and worker sees it at once. "
        "`/admin status` — the workers (GPU, models, what each draws, last seen), the queue by model, its oldest job. "
        "`/admin role WHO [admin|trusted|default|banned|clear]` — WHO `telegram:123`, `discord:456` or a mention · "
        "`/admin audit [N] [ACTION]` — admin actions, links and refusals · `/admin review [JOB]` — what a place's "
        "safety policy blurred or blocked, and (in private) the originals.",
        "**A chat's admins**: `/place` shows this chat's settings; `/place --nsfw allow|spoiler|blur|block "
        '--threshold 0.5 --terms "a, b" --models a,b --negative "..."` sets them (Discord: Manage Server or '
        "Manage Channels; Telegram: the group's admins) · `/place reset [name]`. Every picture is scored by the "
        "safety classifier"
        + (" (SDBOT_SAFETY_CLASSIFIER)" if s.safety_classifier else " — none is configured, so nothing is scored")
        + "; age-restricted channels allow by default, other places "
        f"{s.safety_policy} pictures scored {s.safety_threshold:g} or more.",
        "",
        "/settings — show your defaults; `/settings --steps 30 --sampler euler_a` sets them; `/settings reset`.",
        "/queue — your jobs and the queue · /cancel [job|all] · /history [n] · /info <job> (or reply /info)",
        "/me — your role, your linked accounts, and what your quotas leave (jobs a minute, drawing time a day, "
        "training steps, storage) with when each refills · /link — a one-time code (in private); `/link CODE` on your "
        "other platform makes one account of both (LoRAs, styles, history, quotas) · /unlink",
        "",
        "**Options for /imagine** (`/help imagine` lists them with their other spellings; other commands: `/help COMMAND`)",
        *(f"{option.line(s)}" for option in IMAGINE_OPTIONS),
        f"Models here: {models} (`/models` lists them with their families; `/model NAME` makes one yours).",
        *(f"• {line}" for line in family_lines(ctx.registry)),
        "Prompt syntax as in A1111: (word) ×1.1, [word] ÷1.1, (word:1.3), \\( \\) literal, BREAK starts a new 75-token chunk; "
        "prompts past 77 tokens work. [from:to:when] switches at a step (or a fraction: 0.5), [a|b] alternates.",
        "",
        f"Limits: {_limits_line(s)}; prompts up to {s.max_prompt_chars} characters, uploads up to "
        f"{s.max_upload_bytes / 2**20:.0f} MiB. `/me` shows yours.",
    ]
    if any(entry.kind == "tiny" for entry in ctx.registry):
        lines += ["", render.TINY_NOTE]
    return "\n".join(lines)


def _storage_words(s: Settings) -> str:
    storage = s.limits("default").storage_bytes
    return "no limit on what each keeps" if storage is None else f"{storage / 2**30:.1f} GiB each in all"


def _limits_line(s: Settings) -> str:
    default = s.limits("default")
    parts = []
    if default.queued_jobs is not None:
        parts.append(f"{default.queued_jobs} jobs waiting per person")
    if default.jobs_per_minute is not None:
        parts.append(f"{default.jobs_per_minute} a minute")
    if default.gpu_seconds_per_day is not None:
        parts.append(f"{default.gpu_seconds_per_day / 60:g} min of drawing a day")
    return ", ".join(parts) + " (trusted people: more; admins: no limits)" if parts else "no quotas"
