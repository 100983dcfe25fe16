"""Settings checked before anything starts: each mistake is one line naming the key, exit 2."""

from __future__ import annotations

import re
import socket
import subprocess

import pytest

from thoughtmdp.cli import main
from thoughtmdp.commands.config import load_config
from thoughtmdp.errors import ConfigError
from thoughtmdp.settings.checks import check_model_path, looks_local

END_OF_LINE = (
    "Expecting ',' delimiter at the end of the line: is a closing brace, bracket or comma missing?"
)
HINT = (
    "choose fields with actor.task_options.question_key=/actor.task_options.answer_key= or a preset"
)


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A model folder and data files, in the working folder as a user would have them."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    (tmp_path / "q.jsonl").write_text('{"question": "1+1", "answer": "2"}\n')
    (tmp_path / "broken.jsonl").write_text('{"problem": "1+1", "answer": "2"\n{"problem": "3"}\n')
    return tmp_path


MATH = ["model=./model", "actor.task=math", "heldout.problems=0"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["actor.task=math"],
            "actor.task: the embedded policy (no model=) is built for arith_chain, not 'math': "
            "set model= to a model that can (a folder or a hub name)",
        ),
        (
            ["actor.task=hard_step_chain"],
            "actor.task: the embedded policy (no model=) is built for arith_chain, not "
            "'hard_step_chain': set warmstart.task=hard_step_chain (an embedded policy for it), "
            "or set model= to a model that can (a folder or a hub name)",
        ),
        (
            ["model=./model", "actor.task=math"],
            "actor.task_options.data: task 'math' needs it, e.g. "
            "actor.task_options.data=/data/train.jsonl",
        ),
        (
            [*MATH, "actor.task_options.data=./missing.jsonl"],
            "actor.task_options.data: no such file or folder: ./missing.jsonl",
        ),
        (
            [*MATH, "actor.task_options.data=broken.jsonl"],
            f"actor.task_options.data: broken.jsonl, line 1: not valid JSON ({END_OF_LINE}); "
            "each line of a JSONL file must hold one JSON object",
        ),
        (
            [*MATH, "actor.task_options.data=q.jsonl"],
            "actor.task_options: q.jsonl, line 1: missing field 'problem'; the row has fields "
            f"['answer', 'question']; {HINT}",
        ),
        (
            ["actor.task_options.sizee=3"],
            "actor.task_options.sizee: task 'arith_chain' takes no such option. "
            "Did you mean actor.task_options.size?",
        ),
        (
            ["actor.task_options={num_steps:0}"],
            "actor.task_options: num_steps must be at least 1, got 0",
        ),
        (
            ["actor.episode.reset_policy=bogus"],
            "actor.episode.reset_policy: unknown reset policy 'bogus'; known: "
            "['least_confident', 'none', 'oracle', 'self', 'uniform']",
        ),
        (
            ["actor.episode.reset_policy_options.fallback=bogus"],
            "actor.episode.reset_policy_options: fallback must be 'uniform', 'skip' or 'grpo', "
            "got 'bogus'",
        ),
        (
            ["actor.episode.presets=[1x5]"],
            "actor.episode.presets: unknown preset '1x5'; known: ['grpo', '1x4', '2x4', '1x8', "
            "'rrpo', 'srpo', 'oracle', 'least_confident']",
        ),
        (
            ["learner.max_steps=-5"],
            "learner.max_steps: expected 1 or more (or null: run until stopped), got -5",
        ),
        (
            ["learner.max_steps=0"],
            "learner.max_steps: expected 1 or more (or null: run until stopped), got 0",
        ),
        (["learner.optim.lr=0"], "learner.optim.lr: expected a positive number, got 0.0"),
        (
            ["model=/no/such/model"],
            "model: no such folder: /no/such/model (a local path; a hub model is named org/name)",
        ),
        (["model=empty"], "model: empty holds no config.json; it is no model folder"),
        (
            ["heldout.split=nope"],
            "heldout.split: ArithChain splits are ('train', 'test'), not 'nope'",
        ),
        (
            ["actor.chat_template=./no_template.jinja"],
            "actor.chat_template: cannot read './no_template.jinja' (No such file or directory); "
            "expected auto, none or the path of a Jinja chat template file",
        ),
    ],
)
def test_a_bad_setting_is_one_line_before_anything_starts(files, capsys, argv, message):
    assert main(["train", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"thoughtmdp train: {message}\n"
    assert captured.out == ""
    assert not (files / "runs").exists()


def test_config_show_checks_names_but_not_files(files, capsys):
    shown = load_config("train", None, [*MATH, "actor.task_options.data=./missing.jsonl"])
    assert shown.actor.task_options["data"] == "./missing.jsonl"
    assert main(["config", "show", "actor.task_options.sizee=3"]) == 2
    assert "takes no such option" in capsys.readouterr().err


def test_hub_names_pass_and_local_paths_must_exist():
    assert [looks_local(v) for v in ("Qwen/Qwen2.5-1.5B-Instruct", "gpt2", "~/m", "a/b/c")] == [
        False,
        False,
        True,
        True,
    ]
    check_model_path("Qwen/Qwen2.5-1.5B-Instruct", "--model")
    message = "--model: no such folder: /no/such/path (a local path; a hub model is named org/name)"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        check_model_path("/no/such/path", "--model")


def test_tracebacks_only_under_debug():
    quiet = subprocess.run(
        ["thoughtmdp", "train", "learner.max_steps=0"], capture_output=True, text=True, timeout=60
    )
    assert quiet.returncode == 2
    assert quiet.stderr.splitlines() == [
        "thoughtmdp train: learner.max_steps: expected 1 or more (or null: run until stopped), "
        "got 0"
    ]
    loud = subprocess.run(
        ["thoughtmdp", "--debug", "train", "learner.max_steps=0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert loud.returncode == 1 and "Traceback (most recent call last)" in loud.stderr


def test_a_port_another_run_holds_is_refused(capsys):
    with socket.socket() as other_learner:
        other_learner.bind(("127.0.0.1", 0))
        other_learner.listen()
        address = f"tcp://127.0.0.1:{other_learner.getsockname()[1]}"
        assert main(["train", f"learner.bind={address}"]) == 2
    assert capsys.readouterr().err == (
        f"thoughtmdp train: learner.bind: cannot bind {address} (Address already in use); "
        "another run may hold it: set learner.bind=tcp://127.0.0.1:0 for a free port\n"
    )


def test_the_actor_command_checks_task_and_reset_options(capsys):
    assert main(["actor", "model=/m", "task_options.sizee=3"]) == 2
    assert capsys.readouterr().err == (
        "thoughtmdp actor: task_options.sizee: task 'arith_chain' takes no such option. "
        "Did you mean task_options.size?\n"
    )
    assert main(["actor", "model=/m", "episode.reset_policy_options.statistic=max"]) == 2
    assert capsys.readouterr().err == (
        "thoughtmdp actor: episode.reset_policy_options: reset policy 'self' does not take "
        "the options ['statistic']: SelfLocalization.__init__() got an unexpected keyword "
        "argument 'statistic'\n"
    )
