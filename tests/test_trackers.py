"""Experiment trackers (``learner.report_to``): W&B offline, MLflow and trackio on local stores."""

from __future__ import annotations

import importlib.util
import json
import queue
import re
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_learner import config, hand_episode

from thoughtmdp.errors import ConfigError, DependencyNotInstalled
from thoughtmdp.learners import LearnerLoop, build_trainer
from thoughtmdp.learners.metrics_log import MetricsLog, read_metrics, run_params
from thoughtmdp.learners.trackers import TRACKERS_FILE, log_plots, open_trackers
from thoughtmdp.settings.learner import LearnerConfig, TrackingSettings, check_ready
from thoughtmdp.settings.loader import load

ALLOWED = "tensorboard, wandb, mlflow, trackio"


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """W&B offline and MLflow on a SQLite file, both chosen by their environment variables."""
    pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def wandb_records(run_dir: Path) -> list:
    """Every record of a run's offline ``.wandb`` files, oldest run first.

    The file is a LevelDB-style log (what ``wandb sync`` reads): a 7-byte W&B header, then
    32 KiB blocks of chunks, each a 7-byte header (crc32, length, kind) and a piece of a
    serialised ``Record`` protobuf.
    """
    from wandb.proto import wandb_internal_pb2

    records = []
    for path in sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb")):
        data, pos, pieces = path.read_bytes(), 7, b""
        assert data[:4] == b":W&B"
        while pos + 7 <= len(data):
            if 32768 - pos % 32768 < 7:  # no room for a chunk header: the block is padded
                pos += 32768 - pos % 32768
                continue
            _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
            if kind == 0:
                break
            pieces += data[pos + 7 : pos + 7 + length]
            pos += 7 + length
            if kind in (1, 4):  # a whole record, or the last piece of one
                record = wandb_internal_pb2.Record()
                record.ParseFromString(pieces)
                records.append(record)
                pieces = b""
    return records


def wandb_history(run_dir: Path) -> list[dict]:
    rows = []
    for record in wandb_records(run_dir):
        if record.WhichOneof("record_type") == "history":
            items = record.history.item
            rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items})
    return rows


def wandb_config(run_dir: Path) -> dict:
    (run,) = [r.run for r in wandb_records(run_dir) if r.WhichOneof("record_type") == "run"][:1]
    return {item.key: json.loads(item.value_json) for item in run.config.update}


def test_the_learner_reports_its_steps_to_wandb_and_mlflow(
    tiny_model_dir, tmp_path, offline, monkeypatch
):
    from mlflow import MlflowClient
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    source: queue.Queue = queue.Queue()
    for i in range(4):
        source.put(("actor-0", hand_episode(tokenizer, f"train/{i}")))
    run_dir = tmp_path / "run"
    settings = config(
        tiny_model_dir, run_dir, max_steps=2, checkpoint_every=0, report_to=("wandb", "mlflow")
    )
    loop = LearnerLoop(settings, build_trainer(settings), source=_Source(source))
    try:
        loop.run()
    finally:
        loop.close()
    logged = read_metrics(run_dir)
    assert [r["step"] for r in logged] == [1, 2]
    names = ("actor/pg_loss", "learner/version", "learner/episodes/actor-0")

    history = wandb_history(run_dir)
    assert [row["_step"] for row in history] == [1, 2]
    for row, record in zip(history, logged, strict=True):
        assert {n: row[n] for n in names} == pytest.approx({n: record[n] for n in names})
    params = wandb_config(run_dir)
    assert params["lora"] == json.loads(json.dumps(run_params(settings)["lora"]))
    assert not (run_dir / "tensorboard").exists()

    records = json.loads((run_dir / TRACKERS_FILE).read_text())
    assert records["wandb"]["mode"] == "offline"
    assert records["mlflow"]["tracking_uri"] == offline
    client = MlflowClient(offline)
    run = client.get_run(records["mlflow"]["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params["lora.rank"] == "4" and run.data.params["max_steps"] == "2"
    for name in names:
        history = client.get_metric_history(run.info.run_id, name)
        assert [m.step for m in history] == [r["step"] for r in logged]
        assert [m.value for m in history] == pytest.approx([r[name] for r in logged])


def test_plots_reach_the_runs_the_learner_recorded(tmp_path, offline):
    from mlflow import MlflowClient

    run_dir = tmp_path / "run"
    settings = TrackingSettings(project="plots", run_name="first")
    log = MetricsLog(run_dir, ("wandb", "mlflow"), settings, {"seed": 0})
    log.write(1, {"actor/pg_loss": 0.5})
    log.close()
    plot = _png(tmp_path / "plots" / "heldout.png")
    assert log_plots(run_dir, [plot]) == ["wandb", "mlflow"]

    records = json.loads((run_dir / TRACKERS_FILE).read_text())
    client = MlflowClient(offline)
    artifacts = client.list_artifacts(records["mlflow"]["run_id"], "plots")
    assert [a.path for a in artifacts] == ["plots/heldout.png"]
    assert client.get_experiment_by_name("plots") is not None
    image = wandb_history(run_dir)[-1]  # an image is logged as nested keys
    assert image["plots/heldout/_type"] == "image-file"
    assert image["plots/heldout/path"].endswith(".png")
    # offline-run-<date>_<time>-<id>, with a -<n> suffix when two starts share a second
    folders = (run_dir / "wandb").glob("offline-run-*")
    ids = {re.fullmatch(r"offline-run-\d{8}_\d{6}-(\w+?)(-\d+)?", p.name)[1] for p in folders}
    assert ids == {records["wandb"]["id"]}  # the plots went to the same run


def test_a_resumed_learner_continues_its_mlflow_run(tmp_path, offline):
    from mlflow import MlflowClient

    first = MetricsLog(tmp_path, ("mlflow",), params={"seed": 0})
    first.write(1, {"actor/pg_loss": 0.5})
    first.close()
    second = MetricsLog(tmp_path, ("mlflow",), params={"seed": 1})  # not logged again
    second.write(2, {"actor/pg_loss": 0.25})
    second.close()
    run_id = json.loads((tmp_path / TRACKERS_FILE).read_text())["mlflow"]["run_id"]
    client = MlflowClient(offline)
    history = client.get_metric_history(run_id, "actor/pg_loss")
    assert [(m.step, m.value) for m in history] == [(1, 0.5), (2, 0.25)]
    assert client.get_run(run_id).data.params == {"seed": "0"}


TRACKIO_SCRIPT = """
import json, sys
from pathlib import Path
from thoughtmdp.learners.metrics_log import MetricsLog
from thoughtmdp.learners.trackers import log_plots
from thoughtmdp.settings.learner import TrackingSettings
from trackio.sqlite_storage import SQLiteStorage

run_dir, plot = Path(sys.argv[1]), Path(sys.argv[2])
log = MetricsLog(run_dir, ("trackio",), TrackingSettings(project="tmdp"), {"lora": {"rank": 4}})
log.write(1, {"actor/pg_loss": 0.5, "learner/version": 1.0})
log.write(2, {"actor/pg_loss": 0.25, "learner/version": 2.0})
log.close()
plotted = log_plots(run_dir, [plot])
name = json.loads((run_dir / "trackers.json").read_text())["trackio"]["name"]
logs = SQLiteStorage.get_logs("tmdp", name)
config = SQLiteStorage.get_run_config("tmdp", name)
found = {"plotted": plotted, "name": name, "logs": logs, "lora": config["lora"]}
print("RESULT", json.dumps(found))
"""


def test_trackio_gets_the_steps_config_and_plots_in_a_local_project(tmp_path):
    pytest.importorskip("trackio")
    plot = _png(tmp_path / "plots" / "heldout.png")
    env = {"TRACKIO_DIR": str(tmp_path / "trackio"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(  # trackio fixes its storage folder when first imported
        [sys.executable, "-c", textwrap.dedent(TRACKIO_SCRIPT), str(tmp_path / "run"), str(plot)],
        capture_output=True,
        text=True,
        env={**_environ(), **env},
        check=True,
        timeout=300,
    )
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    found = json.loads(line.removeprefix("RESULT "))
    assert found["plotted"] == ["trackio"] and found["name"] == "run"
    steps = [(r["step"], r.get("actor/pg_loss"), r.get("learner/version")) for r in found["logs"]]
    assert steps[:2] == [(1, 0.5, 1.0), (2, 0.25, 2.0)]
    assert found["logs"][-1]["plots/heldout"]["_type"] == "trackio.image"
    assert found["lora"] == {"rank": 4}


def test_run_params_are_the_train_config_when_the_run_folder_has_one(tmp_path):
    learner = LearnerConfig(run_dir=tmp_path, seed=3)
    assert run_params(learner)["seed"] == 3 and run_params(learner)["run_dir"] == str(tmp_path)
    (tmp_path / "config.yaml").write_text("actors: 2\nlearner:\n  seed: 3\n")
    assert run_params(learner) == {"actors": 2, "learner": {"seed": 3}}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("report_to=[tensorboard,neptune]", f"report_to[1]: expected one of {ALLOWED.split(', ')}"),
        ("report_to=[wandb,wandb]", "report_to: names a tracker twice: ['wandb', 'wandb']"),
        ("report_to=wandb", "report_to: expected a list, got 'wandb'"),
    ],
)
def test_a_bad_report_to_is_a_config_error_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        load(LearnerConfig, None, [override])


def test_report_to_built_in_code_is_checked_too():
    message = f"report_to: expected a list of {ALLOWED}; got 'comet'"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        LearnerConfig(report_to=("tensorboard", "comet"))  # type: ignore[arg-type]
    message = f"report_to: expected a list of {ALLOWED}; got 'wandb'"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        LearnerConfig(report_to="wandb")  # type: ignore[arg-type]
    assert LearnerConfig(report_to=()).report_to == ()


@pytest.fixture
def without_mlflow(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a)
    )


def test_a_missing_tracker_package_names_its_extra_before_the_run(without_mlflow, tmp_path):
    settings = LearnerConfig(model="/models/m", run_dir=tmp_path, report_to=("mlflow",))
    message = (
        'report_to: mlflow is not installed; install it with: pip install "thoughtmdp[mlflow]"'
    )
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        check_ready(settings)
    check_ready(LearnerConfig(model="/models/m"))  # TensorBoard alone needs nothing more
    message = "'mlflow' is not installed; install it with: pip install \"thoughtmdp[mlflow]\""
    with pytest.raises(DependencyNotInstalled, match=f"^{re.escape(message)}$"):
        open_trackers(tmp_path, ("mlflow",))


def test_thoughtmdp_train_checks_the_trackers_before_it_starts(without_mlflow, tmp_path):
    from thoughtmdp.settings.train import TrainConfig
    from thoughtmdp.training.run import train

    config = load(TrainConfig, None, [f"run_dir={tmp_path / 'run'}", "learner.report_to=[mlflow]"])
    with pytest.raises(ConfigError, match=r'^report_to: mlflow is not installed; .*\[mlflow\]"$'):
        train(config, console=None)
    assert not (tmp_path / "run").exists()


def _png(path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    figure = plt.figure(figsize=(2, 2))
    plt.plot([0, 1], [0, 1])
    figure.savefig(path)
    plt.close(figure)
    return path


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


class _Source:
    """A queue of ``(actor, episode)`` as an episode source."""

    def __init__(self, items: queue.Queue) -> None:
        self.items = items

    def get(self, timeout=None):
        return self.items.get(timeout=timeout)
