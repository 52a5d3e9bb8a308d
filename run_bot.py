#!/usr/bin/env python3
"""sdbot's entry point: the one place that wires things together.

    python run_bot.py console [--jsonl] [--no-worker]   the console chat (people, or scripts)
    python run_bot.py serve [--no-worker]               the Discord/Telegram adapters
    python run_bot.py worker [--gpu N] [--models a,b]   only a GPU worker (multi-machine mode)

Each also takes `--health-port N` (GET /healthz, runtime/health.py; overrides SDBOT_HEALTH_PORT).

Order: settings -> logging -> database (migrated) -> blob store -> command service -> worker ->
leadership -> health endpoint -> adapters -> periodic work (done only by the process that leads:
storage/leader.py). Only the worker imports torch; `--no-worker` processes start without it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import ValidationError

from commands.frame.context import Context
from commands.jobs.render import TINY_NOTE
from commands.service import CommandService
from config import ModelRegistry, Settings, load_settings
from config.logs import configure_logging, set_process_field
from config.styles import StyleError, load_styles_file
from generation.models.samplers import find_sampler, sampler_names
from runtime.periodic import PeriodicWork
from storage import model_library
from storage.blobs import LocalBlobStore
from storage.db import Database
from storage.leader import Leadership

if TYPE_CHECKING:
    from runtime.health import HealthEndpoint

log = logging.getLogger("sdbot")

# Intel MKL, torch's CPU BLAS, may take another code path by the memory alignment of its inputs,
# so two processes can round one matmul differently: a training run resumed in a new process
# then drifted from the run it continues (6e-5 after 40 steps on tiny, tests/test_training_crash.py;
# two uninterrupted runs differed as much). AUTO fixes the path for this CPU at no cost that we
# could measure (1024² matmul 6.0 ms vs 6.2 ms; COMPATIBLE took 31 ms). MKL reads it when torch
# loads, which in this process is later (only the worker imports torch); a value set outside wins.
os.environ.setdefault("MKL_CBWR", "AUTO")


@dataclass
class Core:
    settings: Settings
    db: Database
    ctx: Context
    service: CommandService
    wake_adapters: list[Callable[[], None]] = field(default_factory=list)

    def adapters_wake(self) -> None:
        for wake in self.wake_adapters:
            wake()


def model_registry(settings: Settings) -> ModelRegistry:
    """The configured models, each with its family read from its files (a folder, a file, a cached
    Hub model); a model of a family the bot does not run stops the start with what it is."""
    from generation.models.files import UnsupportedModel, with_facts

    try:
        return ModelRegistry([with_facts(entry) for entry in settings.registry()])
    except UnsupportedModel as error:
        raise SystemExit(f"SDBOT_MODEL / SDBOT_MODELS: {error.message}") from None


async def build_core(settings: Settings) -> Core:
    if find_sampler(settings.default_sampler) is None:
        raise SystemExit(f"SDBOT_DEFAULT_SAMPLER={settings.default_sampler!r} is not a sampler: {', '.join(sampler_names())}")
    if settings.styles_file is not None:  # report a broken file at start, not at a user's first --style
        try:
            load_styles_file(settings.styles_file)
        except StyleError as error:
            log.error("%s Styles are unavailable to users until it is fixed.", error)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    await db.migrate()
    ctx = Context(db=db, blobs=LocalBlobStore(settings.resolved_blobs_dir), settings=settings, registry=model_registry(settings))
    async with db.transaction() as session:
        await model_library.sync(session, ctx.registry)  # models admins added in chat
    return Core(settings, db, ctx, CommandService(ctx))


@dataclass(frozen=True)
class WorkerRole:
    """What `run_bot.py worker --gpu N --models a,b` asks of this process's worker."""

    gpu: str | None = None  # CUDA_VISIBLE_DEVICES for this process, set before torch is imported
    models: tuple[str, ...] = ()  # only jobs for these models (display names); empty: any model


def build_worker(core: Core, role: WorkerRole = WorkerRole()):  # type: ignore[no-untyped-def]
    """The engine and its worker. Imports torch and diffusers, so only processes that draw call it."""
    from generation.control.nets import ControlNets
    from generation.engine import Engine
    from generation.imaging.previews import Previewer
    from generation.models.loader import ModelCache, resolve_device, resolve_dtype
    from generation.models.motion import MotionModels
    from generation.models.speed import SpeedOptions
    from generation.tools import Tools
    from generation.worker import Worker, WorkerLimits

    s = core.settings
    device = resolve_device(s.device)
    dtype = resolve_dtype(s.dtype, device)
    models = ModelCache(core.ctx.registry, s.resolved_models_dir, device, dtype, s.max_loaded_models, speed=SpeedOptions.from_settings(s))
    controlnets = ControlNets(s.controlnets, s.resolved_models_dir, device, dtype, s.controlnet_cache_bytes)
    motion = MotionModels(s.motion_adapters, s.motion_loras, s.resolved_models_dir, device, dtype)
    engine = Engine(
        models,
        core.ctx.blobs,
        Tools.from_settings(s, device, dtype),
        adapter_budget_bytes=s.lora_cache_bytes,
        controlnets=controlnets,
        instruct_source=s.instruct_model,
        motion=motion,
        ip_adapters=s.ip_adapters,
        previews=Previewer(s.preview, s.preview_seconds, s.preview_models, device=device, dtype=dtype),
    )
    limits = WorkerLimits.from_settings(s, models=role.models)
    worker = Worker(
        core.db,
        engine,
        core.ctx.blobs,
        limits,
        on_finished=core.adapters_wake,
        preload_model=role.models[0] if role.models else core.ctx.registry.default.display_name,
        registry=core.ctx.registry,
        gpu=role.gpu,
    )
    core.ctx.on_enqueue = worker.wake
    return worker


async def run_console(settings: Settings, *, jsonl: bool, with_worker: bool) -> int:
    from bot.console import ConsoleChat

    core = await build_core(settings)
    console = ConsoleChat(core.service, state_dir=settings.data_dir / "console", jsonl=jsonl, poll_seconds=settings.poll_seconds)
    core.wake_adapters.append(console.wake)
    return await _run(core, console.run(), process_role="console", with_worker=with_worker)


async def run_serve(settings: Settings, *, with_worker: bool) -> int:
    """Every chat adapter whose token is set, side by side in this process."""
    adapters = []
    if settings.telegram_token is not None:
        from bot.telegram import TelegramChat

        adapters.append(("Telegram", TelegramChat))
    if settings.discord_token is not None:
        from bot.discord import DiscordChat

        adapters.append(("Discord", DiscordChat))
    if not adapters:
        log.error(
            "No chat adapter is configured. Set SDBOT_TELEGRAM_TOKEN or SDBOT_DISCORD_TOKEN (see docs/deploy.md), "
            "or use the console chat: python run_bot.py console"
        )
        return 2
    core = await build_core(settings)
    chats = [make(core.service, settings) for _, make in adapters]
    core.wake_adapters.extend(chat.wake for chat in chats)
    return await _run(core, _first_to_stop(chats), process_role="serve", with_worker=with_worker)


async def _first_to_stop(chats) -> int:  # type: ignore[no-untyped-def]
    """Run the adapters together; when one stops (a refused token), stop the rest."""
    tasks = [asyncio.create_task(chat.run()) for chat in chats]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        return max(task.result() for task in done)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run_worker_only(settings: Settings, role: WorkerRole) -> int:
    core = await build_core(settings)
    unknown = [name for name in role.models if core.ctx.registry.get(name) is None]
    if unknown:
        names = ", ".join(entry.display_name for entry in core.ctx.registry)
        log.error("worker --models: %s is not a configured model (known: %s)", ", ".join(unknown), names)
        await core.db.close()
        return 2
    # jobs carry a model's display name: the names given may be another spelling of it
    role = WorkerRole(gpu=role.gpu, models=tuple(core.ctx.registry.get(name).display_name for name in role.models))  # type: ignore[union-attr]
    return await _run(core, asyncio.Event().wait(), process_role="worker", with_worker=True, role=role)


async def _run(core: Core, main, *, process_role: str, with_worker: bool, role: WorkerRole = WorkerRole()) -> int:  # type: ignore[no-untyped-def]
    """Run `main` (an adapter) beside the worker, the cluster's periodic work (done only while this
    process leads) and the health endpoint; stop cleanly on a signal."""
    stop = asyncio.Event()
    worker = build_worker(core, role) if with_worker else None
    if worker is not None:
        set_process_field("owner", worker.owner)  # on every log line: which worker wrote it
    if any(entry.kind == "tiny" for entry in core.ctx.registry):
        log.warning(TINY_NOTE)
    leadership = Leadership(core.db.url)
    await leadership.start()
    health = _health_endpoint(core, process_role, leadership, worker)
    if health is not None:
        try:
            await health.start()
        except OSError as error:  # a port asked for and taken: say so, rather than run unwatched
            log.error(
                "the health endpoint cannot listen on %s port %s: %s (SDBOT_HEALTH_PORT, --health-port)", health.host, health.port, error
            )
            main.close()  # never started
            await leadership.close()
            await core.db.close()
            return 2
    periodic = PeriodicWork(core.db, leadership, lease_seconds=core.settings.lease_seconds, on_requeued=core.adapters_wake)
    periodic.start()
    main_task = asyncio.ensure_future(main)
    tasks = {main_task}
    worker_task = asyncio.create_task(worker.run(stop)) if worker else None
    if worker_task:
        tasks.add(worker_task)
    loop = asyncio.get_running_loop()
    signalled: list[int] = []

    def on_signal(signum: int) -> None:
        signalled.append(signum)
        stop.set()
        main_task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, on_signal, signum)
    code = 1
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if signalled:  # a clean stop: the worker handed its job back
            log.info("stopped by signal %s", signal.Signals(signalled[0]).name)
            code = 130 if signalled[0] == signal.SIGINT else 0
        elif main_task in done:
            code = main_task.result()
        else:
            worker_task.result()  # type: ignore[union-attr]  # raises what stopped it
            log.error("the worker stopped unexpectedly")
    finally:
        stop.set()
        # Cancel once: a second cancel would interrupt the adapters' own clean-up (a result being
        # recorded as sent, the Telegram client stopping) and leave it half done.
        if not main_task.done() and not main_task.cancelling():
            main_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await main_task
        if worker_task:
            await worker_task
        await periodic.stop()
        await leadership.close()
        if health is not None:
            await health.stop()
        await core.db.close()
    return code


def _health_endpoint(core: Core, process_role: str, leadership: Leadership, worker) -> HealthEndpoint | None:  # type: ignore[no-untyped-def]
    """The /healthz endpoint, when a port is set. aiohttp's server is imported only then: a chat
    process starts fast without it."""
    s = core.settings
    if s.health_port is None:
        return None
    from runtime.health import HealthEndpoint

    return HealthEndpoint(
        role=process_role,
        db=core.db,
        leadership=leadership,
        worker_health=worker.health if worker is not None else None,
        host=s.health_host,
        port=s.health_port,
        secrets=s.secret_values(),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run_bot.py", description="sdbot: Stable Diffusion in chat")
    commands = parser.add_subparsers(dest="command")
    console = commands.add_parser("console", help="chat with the bot in this terminal (or from a script)")
    console.add_argument("--jsonl", action="store_true", help="one JSON object per line in and out, for scripts")
    console.add_argument("--no-worker", action="store_true", help="do not draw here (a worker runs elsewhere)")
    serve = commands.add_parser("serve", help="run the Discord/Telegram adapters")
    serve.add_argument("--no-worker", action="store_true", help="do not draw here (a worker runs elsewhere)")
    worker = commands.add_parser("worker", help="only draw: claim jobs from the shared database")
    worker.add_argument("--gpu", metavar="N", help="draw on this GPU (sets CUDA_VISIBLE_DEVICES=N for this process)")
    worker.add_argument("--models", metavar="A,B", default="", help="only take jobs for these models (default: any)")
    for process in (console, serve, worker):
        process.add_argument(
            "--health-port", metavar="N", type=_port, help="serve GET /healthz on this port (0: any free port; overrides SDBOT_HEALTH_PORT)"
        )
    args = parser.parse_args(argv)

    try:
        settings = load_settings()
    except ValidationError as error:
        problems = "\n".join(
            f"  {'SDBOT_' + '_'.join(map(str, e['loc'])).upper() + ': ' if e['loc'] else ''}{e['msg']}" for e in error.errors()
        )
        print(f"sdbot: the configuration is not valid:\n{problems}", file=sys.stderr)
        return 2
    if getattr(args, "health_port", None) is not None:  # several processes on one host need their own ports
        settings = settings.model_copy(update={"health_port": args.health_port})
    configure_logging(settings.log_level, settings.log_format, settings.secret_values())
    if args.command == "console":
        job = run_console(settings, jsonl=args.jsonl, with_worker=not args.no_worker)
    elif args.command == "worker":
        if args.gpu is not None:
            if not args.gpu.isdigit():
                print(f"sdbot: --gpu takes a GPU number (0, 1, ...), not {args.gpu!r}", file=sys.stderr)
                return 2
            os.environ["CUDA_VISIBLE_DEVICES"] = args.gpu  # before anything imports torch
        models = tuple(name.strip() for name in args.models.split(",") if name.strip())
        job = run_worker_only(settings, WorkerRole(gpu=args.gpu, models=models))
    else:
        job = run_serve(settings, with_worker=not getattr(args, "no_worker", False))
    return asyncio.run(job)


def _port(value: str) -> int:
    if not value.isdigit() or int(value) > 65535:
        raise argparse.ArgumentTypeError(f"a port number from 0 to 65535 (0: any free port), not {value!r}")
    return int(value)


if __name__ == "__main__":
    sys.exit(main())
