"""The episode setting: presets, values set over them, and errors that name the key."""

from __future__ import annotations

import re

import pytest

from thoughtmdp.cli import main
from thoughtmdp.commands.config import load_config
from thoughtmdp.commands.train import load_train_config
from thoughtmdp.episodes.presets import EpisodeConfig, EpisodeSettings, episode_config
from thoughtmdp.episodes.reset_policies import RESET_POLICIES
from thoughtmdp.errors import ConfigError
from thoughtmdp.settings.actor import ActorConfig
from thoughtmdp.settings.arguments import describe_settings
from thoughtmdp.settings.loader import load
from thoughtmdp.settings.train import TrainConfig

KNOWN_PRESETS = "['grpo', '1x4', '2x4', '1x8', 'rrpo', 'srpo', 'oracle', 'least_confident']"


def shape(config: EpisodeConfig) -> tuple[int, int, int, str]:
    return (
        config.base_group_size,
        config.num_resets,
        config.suffix_group_size,
        config.reset_policy,
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["episode.num_resezs=2"],
            "unknown key 'episode.num_resezs'. Did you mean 'episode.num_resets'?",
        ),
        (["episode.num_resets=-1"], "episode.num_resets: expected 0 or more, got -1"),
        (["episode.suffix_group_size=0"], "episode.suffix_group_size: expected 1 or more, got 0"),
        (["episode.num_resets=two"], "episode.num_resets: expected int | None, got 'two'"),
        (
            ["episode.presets=[1x4,srp]"],
            f"episode.presets: unknown preset 'srp'; known: {KNOWN_PRESETS}",
        ),
        (
            ["episode.presets=[2x4]", "episode.num_resets=0"],
            "episode: base_group_size and num_resets are both 0: set one above 0",
        ),
        (
            ["episode.base_group_size=20"],
            "episode.max_seed_attempts: expected base_group_size + num_resets (21) or more, got 16",
        ),
    ],
)
def test_bad_episode_settings_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        load(ActorConfig, None, overrides)


def test_an_unknown_reset_policy_lists_the_registered_ones():
    # Other tests register policies in this process, so the list is read, not written out.
    assert {"none", "oracle", "self", "uniform", "least_confident"} <= set(RESET_POLICIES.names())
    message = (
        f"episode.reset_policy: unknown reset policy 'unifrom'; known: {RESET_POLICIES.names()}"
    )
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        load(ActorConfig, None, ["episode.reset_policy=unifrom"])


def test_the_command_line_reports_the_key(capsys):
    assert main(["config", "show", "--kind", "actor", "episode.num_resets=-1"]) == 2
    assert capsys.readouterr().err == (
        "thoughtmdp config: episode.num_resets: expected 0 or more, got -1\n"
    )


def test_an_unknown_key_under_a_train_config_names_the_whole_path():
    message = "unknown key 'actor.episode.num_resezs'. Did you mean 'actor.episode.num_resets'?"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        load_train_config(None, ["actor.episode.num_resezs=2"])


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ([], (4, 1, 4, "self")),
        (["episode.presets=[grpo]"], (8, 0, 4, "none")),
        (["episode.presets=[grpo]", "episode.base_group_size=16"], (16, 0, 4, "none")),
        (["episode.presets=[2x4,rrpo]", "episode.suffix_group_size=2"], (0, 2, 2, "uniform")),
        (["episode.presets=[1x8,oracle]", "episode.reset_policy=self"], (0, 1, 8, "self")),
        (["episode.presets=[rrpo,srpo]"], (4, 1, 4, "self")),  # the later preset wins
    ],
)
def test_values_set_win_over_presets(overrides, expected):
    assert shape(load(ActorConfig, None, overrides).episode.resolve()) == expected


def test_a_value_from_a_file_wins_over_presets_given_later(tmp_path):
    path = tmp_path / "actor.yaml"
    path.write_text("episode: {num_resets: 2}\n")
    config = load(ActorConfig, path, ["episode.presets=[grpo]"])
    assert config.episode == EpisodeSettings(presets=("grpo",), num_resets=2)
    assert shape(config.episode.resolve()) == (8, 2, 4, "none")


def test_options_reach_the_resolved_config():
    config = load(ActorConfig, None, ["episode.reset_policy_options.fallback=skip"])
    assert config.episode.resolve().reset_policy_options == {"fallback": "skip"}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("paper/grpo-numinamath-olmo3-7b", (8, 0, 4, "none")),
        ("paper/grpo-lcb-medium-olmo3-7b", (8, 0, 4, "none")),
        ("paper/srpo-numinamath-qwen2.5-14b", (4, 1, 4, "self")),
        ("paper/srpo-lcb-medium-olmo3-7b", (4, 1, 4, "self")),
        ("paper/rrpo-numinamath-olmo3-7b", (4, 1, 4, "uniform")),
        ("paper/rrpo-lcb-medium-olmo3-7b", (4, 1, 4, "uniform")),
        ("paper/table5", (4, 1, 4, "self")),
        ("multinode/actor", (4, 1, 4, "self")),
    ],
)
def test_shipped_configs_keep_their_episode_shapes(name, expected):
    config = load_config("actor" if name.endswith("actor") else "train", name, [])
    actor = config if isinstance(config, ActorConfig) else config.actor
    assert shape(actor.episode.resolve()) == expected


def test_episode_config_takes_presets_then_values():
    assert episode_config("2x4", "oracle", max_seed_attempts=5) == EpisodeConfig(
        base_group_size=0, num_resets=2, reset_policy="oracle", max_seed_attempts=5
    )
    message = f"presets: unknown preset 'grpo8'; known: {KNOWN_PRESETS}"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        episode_config("grpo8")
    with pytest.raises(ConfigError, match=r"^num_resets: expected 0 or more, got -2$"):
        EpisodeConfig(num_resets=-2)


def test_the_help_lists_the_episode_keys():
    lines = describe_settings(ActorConfig)
    assert (
        "episode.num_resets = None: K, failed seed chains to reset; 0 is GRPO (``None``: from "
        "the presets, else 1)."
    ) in lines


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("actor.episode.num_resets=-1", "actor.episode.num_resets: expected 0 or more, got -1"),
        ("learner.optim.warmup_steps=-1", "learner.optim.warmup_steps: expected 0 or more, got -1"),
        ("heldout.problems=-1", "heldout.problems: expected 0 or more, got -1"),
    ],
)
def test_a_sections_own_check_names_the_full_key(override, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        load(TrainConfig, None, [override])
