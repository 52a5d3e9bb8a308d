"""The command layer, the worker and training on PostgreSQL: tests of the SQLite suite run again
here with the bot's database on the throwaway cluster (tests.support.postgres_cluster). Each test below
is imported from its own module and collected again with this module's `settings`, whose
`database_url` is a fresh PostgreSQL database."""

from __future__ import annotations

import pytest

from tests.support import postgres_cluster
from tests.test_service import (  # noqa: F401 - collected here again, on PostgreSQL
    test_a_delivery_that_keeps_failing_is_given_up,
    test_bad_input_creates_no_job,
    test_buttons_and_replies_resolve_after_a_restart,
    test_imagine_then_result_with_buttons,
    test_queue_cancel_history_info,
    test_queue_limit,
    test_vary_reroll_and_vary_on_a_single,
)
from tests.test_training_service import (  # noqa: F401
    checkpointing_bot,
    small_bot,
    test_a_reply_to_an_earlier_run_adds_its_pictures,
    test_bad_datasets_are_refused_and_nothing_is_queued_or_stored,
    test_dreambooth_draws_its_class_pictures_once,
    test_one_run_at_a_time_and_the_daily_step_budget,
    test_train_status_shows_each_runs_step_checkpoint_and_loss_and_previews_apart,  # a query on the params' JSON
)
from tests.test_worker import test_cancel_stops_a_running_job, test_shutdown_hands_the_job_back  # noqa: F401


@pytest.fixture
async def settings(settings):  # type: ignore[no-untyped-def]
    return settings.model_copy(update={"database_url": await postgres_cluster.cluster().new_database()})


async def test_these_run_on_postgresql(bot) -> None:  # type: ignore[no-untyped-def]
    """The tests above use this module's `bot`: on PostgreSQL, not on the SQLite file."""
    assert not bot.core.db.is_sqlite and bot.core.db.engine.dialect.name == "postgresql"
    async with bot.core.db.transaction() as session:
        from sqlalchemy import text

        assert (await session.execute(text("select version()"))).scalar_one().startswith("PostgreSQL")


async def test_a_job_queued_by_another_process_wakes_the_worker_at_once(settings) -> None:  # type: ignore[no-untyped-def]
    """LISTEN/NOTIFY: with polling every 30 s, a job queued through another connection (as a chat
    process on another machine would) is claimed within seconds."""
    import asyncio

    import run_bot
    from storage import queue, users
    from storage.db import Database
    from tests.test_service import Bot

    core = await run_bot.build_core(settings.model_copy(update={"poll_seconds": 30.0}))
    bot = Bot(core, run_bot.build_worker(core))
    stop = asyncio.Event()
    running = asyncio.create_task(bot.worker.run(stop))
    elsewhere = Database(settings.database_url)
    try:
        await asyncio.sleep(2.0)  # the worker is idle, waiting on its 30 s poll (and the notifications)
        async with elsewhere.transaction() as session:
            person = await users.get_or_create(session, "test", "alice")
            job = await queue.enqueue(
                session,
                user_id=person.id,
                platform="test",
                chat_id="c",
                source_message_id=None,
                kind="txt2img",
                model="tiny",
                batch_key="",
                params={"bad": "params"},
                max_attempts=1,
            )
        loop = asyncio.get_running_loop()
        queued_at = loop.time()
        while True:
            async with elsewhere.transaction() as session:
                if (await queue.get(session, job.id)).attempt > 0:  # claimed (its params fail it: no model runs)
                    break
            assert loop.time() - queued_at < 10, "the worker waited for its poll"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await running
        await elsewhere.close()
        bot.worker.executor.shutdown()
        await core.db.close()
