"""The command layer, the worker and training on PostgreSQL: tests of the SQLite suite run again
here with the bot's database on the throwaway cluster (tests.postgres_cluster). Each test below
is imported from its own module and collected again with this module's `settings`, whose
`database_url` is a fresh PostgreSQL database."""

from __future__ import annotations

import pytest

from tests import postgres_cluster
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
    small_bot,
    test_a_reply_to_an_earlier_run_adds_its_pictures,
    test_bad_datasets_are_refused_and_nothing_is_queued_or_stored,
    test_dreambooth_draws_its_class_pictures_once,
    test_one_run_at_a_time_and_the_daily_step_budget,
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
