"""/styles and /style: prompt templates people apply with `--style NAME`.

    /styles                          every style you can use, with its text
    /styles NAME                     one style
    /style save NAME <template with {prompt}> [--no <negative>] [--global]
    /style delete NAME [--global]

Built-in styles ship in config/styles.toml; an admin may add a file (SDBOT_STYLES_FILE) and save
global styles (`--global`). A user's own style hides a global one of the same name, for them.
"""

from __future__ import annotations

from commands.frame.context import Context
from commands.frame.declare import Option, read_flags, read_value
from commands.frame.errors import UserError
from commands.frame.types import Reply, Request
from commands.jobs.admission import asker
from commands.jobs.prompt_features import style_library
from config.styles import PLACEHOLDER, Style, check_negative, check_style_name, check_template
from storage import prompt_library

GLOBAL = Option("global", "switch", "Admins: a style for everyone", default=False, slash="everyone")
OPTIONS: tuple[Option, ...] = (
    Option("action", "choice", "save or delete", choices=("save", "delete"), positional=True, required=True),
    Option("name", "text", "The style's name", positional=True, required=True),
    Option("template", "text", "With save: the prompt template, containing {prompt}", positional=True, rest=True),
    Option("no", "text", "With save: its negative prompt", aliases=("neg", "negative"), slash="negative"),
    GLOBAL,
)


async def list_styles(ctx: Context, request: Request, args: str) -> list[Reply]:
    name = args.strip().lower()
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
        library = await style_library(ctx, session, user.id)
    if name:
        style = library.get(name)
        if style is None:
            raise UserError(f"There is no style `{name}`. `/styles` lists them all.")
        return [Reply(_describe(style, full=True))]
    own = [s for s in library.values() if s.owner == "you"]
    shared = [s for s in library.values() if s.owner != "you"]
    lines = ["🎨 Styles: add `--style NAME` to a prompt (several: `--style anime,cinematic`, applied in order)."]
    lines += [_describe(style) for style in shared]
    if own:
        lines += ["", "Yours:"] + [_describe(style) for style in own]
    else:
        lines += ["", "Save your own: `/style save NAME <template with {prompt}> --no <negative>`."]
    return [Reply("\n".join(lines))]


def _describe(style: Style, *, full: bool = False) -> str:
    appended = style.prompt and PLACEHOLDER not in style.prompt  # applied after ", "
    text = f"• {style.name}: {f'{PLACEHOLDER}, {style.prompt}' if appended else style.prompt}"
    if style.negative:
        text += f"\n   negative: {style.negative}"
    if full and style.description:
        text = f"{text}\n   {style.description}"
    return text


async def style_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    verb, _, rest = args.strip().partition(" ")
    verb = verb.lower()
    if verb in ("save", "add"):
        return await _save(ctx, request, rest)
    if verb in ("delete", "remove", "rm"):
        return await _delete(ctx, request, rest)
    if verb in ("list", ""):
        return await list_styles(ctx, request, "")
    raise UserError("Use `/style save NAME <template with {prompt}> --no <negative>`, `/style delete NAME`, or `/styles` to list them.")


async def _save(ctx: Context, request: Request, args: str) -> list[Reply]:
    flags = read_flags(request.options, args, OPTIONS)
    name, _, template = flags.text.partition(" ")
    name, template = name.lower(), template.strip()
    negative = str(flags.values.get("no", "")).strip()
    problems = list(flags.problems)
    if not name:
        problems.append("Give the style a name, e.g. `/style save noir {prompt}, black and white film noir --no color`.")
    else:
        problems += [p for p in (check_style_name(name), check_template(template), check_negative(negative)) if p]
    is_global = read_value(GLOBAL, flags.values, ctx.settings, problems, flags.written)
    if is_global and not ctx.is_admin(request):
        problems.append("Only admins can save global styles; leave out `--global` to save it for yourself.")
    if problems:
        raise UserError(*problems)
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
        owner = None if is_global else user.id
        if owner is not None:
            own = {row.name for row in await prompt_library.styles_for(session, user.id) if row.owner_id == user.id}
            if name not in own and len(own) >= ctx.settings.max_styles_per_user:
                raise UserError(f"You have {len(own)} styles, the most one person may keep. Delete one with `/style delete NAME` first.")
        replaced = await prompt_library.save_style(session, owner, name, template, negative)
    where = "for everyone" if is_global else "for you"
    verb = "Replaced" if replaced else "Saved"
    return [Reply(f"{verb} the style `{name}` {where}. Use it with `--style {name}`.\n{_describe(Style(name, template, negative))}")]


async def _delete(ctx: Context, request: Request, args: str) -> list[Reply]:
    flags = read_flags(request.options, args, OPTIONS)
    name = flags.text.strip().lower()
    problems = list(flags.problems)
    is_global = read_value(GLOBAL, flags.values, ctx.settings, problems, flags.written)
    if problems or not name:
        raise UserError(*(problems or ["Which style? `/style delete NAME`."]))
    if is_global and not ctx.is_admin(request):
        raise UserError("Only admins can delete global styles.")
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
        deleted = await prompt_library.delete_style(session, None if is_global else user.id, name)
    if not deleted:
        whose = "global style" if is_global else "style of yours"
        raise UserError(f"There is no {whose} named `{name}`. Built-in styles can't be deleted; `/styles` lists yours.")
    return [Reply(f"Deleted the style `{name}`.")]
