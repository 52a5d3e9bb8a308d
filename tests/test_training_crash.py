"""Nothing a run learned is lost: a worker process SIGKILLed mid-run is replaced by one that
resumes from the last checkpoint (not from step 0), and the final weights equal those of an
uninterrupted run with the same seed (CPU, deterministic). A drawing job queued during a run is
delivered before the run finishes: the run yields at a step boundary and resumes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import torch
from safetensors.torch import load_file

from tests.conftest import bot_env
from tests.support.console_process import ConsoleProcess
from tests.support.train_pictures import picture_files

TRAIN = "/train lora foxy --steps 40 --seed 3 --rank 4 --lr 1e-3 --sample-every 0"


def env_for(data: Path, models_dir: Path) -> dict[str, str]:
    return bot_env(data, models_dir, SDBOT_TRAIN_CHECKPOINT_STEPS="5", SDBOT_DEFAULT_STEPS="2")


def trained_file(bot: ConsoleProcess, folder: Path) -> dict[str, torch.Tensor]:
    download = bot.message("text", reply_to=bot.say(text="/lora download foxy"))
    [document] = download["documents"]
    path = folder / "foxy.safetensors"
    path.write_bytes(Path(document["path"]).read_bytes())
    return load_file(path)


def test_a_killed_run_resumes_from_its_checkpoint_to_the_same_weights(tmp_path: Path, models_dir: Path) -> None:
    pictures = picture_files(tmp_path / "pictures")
    straight = ConsoleProcess(env_for(tmp_path / "straight", models_dir), tmp_path / "straight.log")
    straight.message("result", timeout=300, reply_to=straight.say(text=TRAIN, attachments=pictures))
    expected = trained_file(straight, tmp_path / "straight")
    assert straight.finish() == 0

    data = tmp_path / "killed"
    first = ConsoleProcess(env_for(data, models_dir), tmp_path / "killed.log")
    status = first.message("status", reply_to=first.say(text=TRAIN, attachments=pictures))

    def past_a_checkpoint(event: dict) -> bool:  # type: ignore[type-arg]
        if event["event"] != "edit" or event["id"] != status["id"] or "step " not in event["text"]:
            return False
        return 12 <= int(event["text"].split("step ")[1].split("/")[0]) < 35

    first.wait_for(past_a_checkpoint, timeout=300)
    first.kill()
    assert first.messages("result") == []
    with sqlite3.connect(data / "sdbot.db") as db:
        assert db.execute("select status, attempt from jobs").fetchall() == [("running", 1)]
        [(saved_step, saved, loose)] = db.execute("select checkpoint_step, checkpoint_blob, loose_checkpoint from training_runs").fetchall()
    assert saved_step >= 10 and saved_step % 5 == 0
    # the last checkpoint is kept, and at most the one the kill caught being written or superseded,
    # which the run knows of (and the resumed run deletes: none is left at the end)
    on_disk = {path.name for path in (data / "blobs").rglob("*.ckpt")}
    assert saved in on_disk and on_disk <= {saved, loose}, (on_disk, saved, loose)

    second = ConsoleProcess(env_for(data, models_dir), tmp_path / "killed.log")
    result = second.message("result", timeout=300)
    assert "trained the LoRA `foxy`" in result["text"]
    resumed = trained_file(second, tmp_path)
    assert second.finish() == 0
    log = (tmp_path / "killed.log").read_text()
    assert "took back 1 job(s) from dead worker(s)" in log
    assert "resuming the training from step " in log
    resumed_at = int(log.split("resuming the training from step ")[1].split()[0])
    assert resumed_at >= saved_step
    with sqlite3.connect(data / "sdbot.db") as db:
        assert db.execute("select status, attempt from jobs").fetchall() == [("succeeded", 2)]
        assert db.execute("select kind, status from deliveries").fetchall() == [("result", "sent")]
    assert list((data / "blobs").rglob("*.ckpt")) == [], "a finished run's checkpoints are deleted"
    assert resumed.keys() == expected.keys()
    different = [key for key in expected if not torch.equal(expected[key], resumed[key])]
    assert different == [], f"{len(different)} tensors differ after the resume, e.g. {different[:3]}"


def test_a_drawing_job_queued_during_a_run_comes_first(tmp_path: Path, models_dir: Path) -> None:
    bot = ConsoleProcess(env_for(tmp_path / "data", models_dir), tmp_path / "bot.log")
    pictures = picture_files(tmp_path / "pictures")
    asked = bot.say(text=TRAIN.replace("--steps 40", "--steps 120"), attachments=pictures)
    status = bot.message("status", reply_to=asked)
    bot.wait_for(lambda e: e["event"] == "edit" and e["id"] == status["id"] and "step " in e["text"], timeout=300)
    drawn = bot.message("result", timeout=300, reply_to=bot.say(text="/imagine a fox --steps 2 --size 64x64 --seed 1"))
    trained = bot.message("result", timeout=300, reply_to=asked)
    assert bot.finish() == 0
    order = [event["id"] for event in bot.events if event.get("kind") == "result"]
    assert order.index(drawn["id"]) < order.index(trained["id"])
    log = (tmp_path / "bot.log").read_text()
    assert "yielded" in log and "resuming the training from step " in log


def test_cancel_stops_a_run_at_a_step_and_keeps_what_it_learned(tmp_path: Path, models_dir: Path) -> None:
    bot = ConsoleProcess(env_for(tmp_path / "data", models_dir), tmp_path / "bot.log")
    asked = bot.say(text=TRAIN.replace("--steps 40", "--steps 400"), attachments=picture_files(tmp_path / "pictures"))
    status = bot.message("status", reply_to=asked)
    bot.wait_for(lambda e: e["event"] == "edit" and e["id"] == status["id"] and "step " in e["text"], timeout=300)
    stopping = bot.message("text", reply_to=bot.say(text="/cancel"))
    assert "stopping after its current step; what it learned so far is kept" in stopping["text"]
    result = bot.message("result", timeout=300, reply_to=asked)
    assert "trained the LoRA `foxy`, stopped at step " in result["text"] and " of 400 as you asked" in result["text"]
    listed = bot.message("text", reply_to=bot.say(text="/loras"))
    assert "• foxy — kohya" in listed["text"]
    assert bot.finish() == 0
    with sqlite3.connect(tmp_path / "data" / "sdbot.db") as db:
        assert db.execute("select status from jobs").fetchall() == [("succeeded",)]
