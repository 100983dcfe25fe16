"""Chat templates: prompts as the user turn of an Instruct model, token-exact end to end."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from thoughtmdp import SamplingParams, ThoughtMDPEnv, episode_config, training_arrays
from thoughtmdp.envs.arith_chain import ArithChainTask
from thoughtmdp.episodes.reset_policies import ResetContext, SelfLocalization
from thoughtmdp.errors import ConfigError
from thoughtmdp.evaluation.engine import EvalEngine
from thoughtmdp.mdp.chat import ChatFormat
from thoughtmdp.settings.actor import ActorConfig, check_ready
from thoughtmdp.settings.evaluation import EvalSettings
from thoughtmdp.settings.train import HeldoutSettings
from thoughtmdp.types import PrefixState, Thought, Trajectory
from thoughtmdp.wire import decode, encode_episode

QWEN_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""The shape of Qwen2.5-Instruct's template, without its default system turn."""

OTHER_TEMPLATE = (
    "{% for message in messages %}<|im_start|>system\nBe brief.<|im_end|>\n"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

TASK = ArithChainTask(num_steps=2, size=20, test_size=5)


@pytest.fixture(scope="module")
def chat_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with ``<|im_start|>``/``<|im_end|>`` added and a Qwen-style template."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = QWEN_TEMPLATE
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    folder = tmp_path_factory.mktemp("chat_model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def chat_tok(chat_model_dir):
    return AutoTokenizer.from_pretrained(chat_model_dir)


@pytest.fixture(scope="module")
def plain_tok(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def template_ids(tokenizer, text, template=None):
    """What ``apply_chat_template`` itself gives for ``text`` as the user turn."""
    return tuple(
        tokenizer.apply_chat_template(
            [{"role": "user", "content": text}],
            chat_template=template,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=False,
        )
    )


def prompt_ids(tokenizer, **kwargs):
    env = ThoughtMDPEnv(TASK, tokenizer=tokenizer, **kwargs)
    obs, info = env.reset(options={"problem": 0})
    return obs["prompt"], info["prompt_token_ids"]


def test_the_env_prompt_is_the_user_turn_followed_by_the_assistant_header(chat_tok):
    prompt, ids = prompt_ids(chat_tok)
    text = TASK.render_prompt(TASK.problems("train")[0])
    assert ids == template_ids(chat_tok, text)
    start, end = chat_tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    header = tuple(chat_tok.encode("<|im_start|>assistant\n", add_special_tokens=False))
    assert ids[0] == start and header[0] == start and ids[-len(header) :] == header
    assert ids.count(end) == 1
    assert prompt == f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"
    assert chat_tok.decode(list(ids)) == prompt


def test_thoughts_continue_inside_the_assistant_turn(chat_tok):
    env = ThoughtMDPEnv(TASK, tokenizer=chat_tok)
    _, info = env.reset(options={"problem": 0})
    _, _, _, _, info = env.step("8+6=14</thought>")
    thought = tuple(chat_tok.encode("8+6=14</thought>", add_special_tokens=False))
    assert info["prefix_token_ids"] == info["prompt_token_ids"] + thought


def test_none_gives_raw_ids_and_auto_without_a_template_is_raw(chat_tok, plain_tok):
    text = TASK.render_prompt(TASK.problems("train")[0])
    raw = tuple(chat_tok.encode(text, add_special_tokens=False))
    assert prompt_ids(chat_tok, chat_template="none") == (text, raw)
    assert plain_tok.chat_template is None
    plain = tuple(plain_tok.encode(text, add_special_tokens=False))
    assert prompt_ids(plain_tok) == (text, plain)
    assert prompt_ids(plain_tok, chat_template="none") == (text, plain)


def test_a_template_file_is_used_without_changing_the_tokenizer(chat_tok, tmp_path):
    path = tmp_path / "brief.jinja"
    path.write_text(OTHER_TEMPLATE)
    text = TASK.render_prompt(TASK.problems("train")[0])
    prompt, ids = prompt_ids(chat_tok, chat_template=str(path))
    assert ids == template_ids(chat_tok, text, OTHER_TEMPLATE)
    assert prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n")
    assert chat_tok.chat_template == QWEN_TEMPLATE
    assert prompt_ids(chat_tok)[1] == template_ids(chat_tok, text)


def test_a_bad_template_path_names_the_setting_and_the_path(chat_tok, tmp_path):
    missing = tmp_path / "missing.jinja"
    msg = (
        f"chat_template: cannot read {str(missing)!r} (No such file or directory); "
        "expected auto, none or the path of a Jinja chat template file"
    )
    with pytest.raises(ConfigError, match=f"^{re.escape(msg)}$"):
        ThoughtMDPEnv(TASK, tokenizer=chat_tok, chat_template=str(missing))
    empty = tmp_path / "empty.jinja"
    empty.write_text("\n")
    msg = (
        f"chat_template: {str(empty)!r} is empty; "
        "expected auto, none or the path of a Jinja chat template file"
    )
    with pytest.raises(ConfigError, match=f"^{re.escape(msg)}$"):
        ChatFormat.resolve(chat_tok, str(empty))
    # the actor checks the file before it loads the model
    with pytest.raises(ConfigError, match=r"^chat_template: cannot read .*missing\.jinja"):
        check_ready(ActorConfig(model="/models/m", chat_template=str(missing)))
    check_ready(ActorConfig(model="/models/m", chat_template="none", backend="transformers"))


def test_evaluations_render_prompts_as_the_actor_does(chat_tok, tmp_path):
    actor = ActorConfig(chat_template="none")
    assert ActorConfig().chat_template == "auto" == EvalSettings().chat_template
    settings = HeldoutSettings().eval_settings(actor)
    assert settings.chat_template == "none" and settings.fingerprint()["chat_template"] == "none"

    class Backend:
        tokenizer = chat_tok

    text = TASK.render_prompt(TASK.problems("test")[0])
    for setting, expected in [
        ("auto", template_ids(chat_tok, text)),
        ("none", tuple(chat_tok.encode(text, add_special_tokens=False))),
    ]:
        env = EvalEngine(Backend(), TASK, EvalSettings(chat_template=setting)).env()
        assert env.reset(options={"problem": 0})[1]["prompt_token_ids"] == expected


class RecordingBackend:
    """A backend that records the localiser prompts it is asked to complete."""

    def __init__(self, inner):
        self.inner, self.prompts = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def complete(self, prompt, sampling):
        self.prompts.append(prompt)
        return await self.inner.complete(prompt, sampling)


class LastThoughtLocalization(SelfLocalization):
    """Asks the policy (so the localiser prompt is sent) but resets at the last thought."""

    async def decide(self, context):
        decision = await super().decide(context)
        return replace(decision, reset_index=context.seed_length, fallback=None)


@pytest.fixture(scope="module")
def chat_backend(chat_model_dir):
    from thoughtmdp.agents.backends.transformers import TransformersBackend

    backend = TransformersBackend(chat_model_dir)
    yield backend
    backend.close()


def test_the_localiser_prompt_is_rendered_with_the_template(chat_backend):
    tokenizer = chat_backend.tokenizer
    recording = RecordingBackend(chat_backend)
    problem = TASK.problems("train")[0]
    thoughts = (Thought("8+6=15"), Thought("15+5=20 \\boxed{20}"))
    seed_chain = Trajectory(PrefixState(problem.id), thoughts)
    render = ThoughtMDPEnv(TASK, tokenizer=tokenizer).chat.render
    context = ResetContext(seed_chain, TASK, recording, np.random.default_rng(0), render)
    asyncio.run(SelfLocalization(max_tokens=4).decide(context))
    question = TASK.render_localizer_prompt(problem, [t.text for t in thoughts])
    [sent] = recording.prompts
    assert sent == f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
    # what TransformersBackend.complete and VLLMBackend.complete do with the text
    assert tuple(tokenizer.encode(sent, add_special_tokens=False)) == template_ids(
        tokenizer, question
    )
    # without a renderer (a custom caller), the question goes as it is
    raw = ResetContext(seed_chain, TASK, recording, np.random.default_rng(0))
    asyncio.run(SelfLocalization(max_tokens=4).decide(raw))
    assert recording.prompts[-1] == question


def test_the_audit_asks_the_localiser_in_the_chat_format(chat_backend):
    from thoughtmdp.evaluation.audit import AuditSettings, audit_localization

    recording = RecordingBackend(chat_backend)
    settings = EvalSettings(max_tokens=6, max_thoughts=2, max_total_tokens=12)
    engine = EvalEngine(recording, TASK, settings)
    problems = list(TASK.problems("test")[:2])
    result = asyncio.run(audit_localization(engine, problems, AuditSettings(suffixes=1)))
    assert result.failed == len(recording.prompts) > 0  # the random model fails every chain
    for sent in recording.prompts:
        assert sent.startswith("<|im_start|>user\n")
        assert sent.endswith("<|im_end|>\n<|im_start|>assistant\n")


def test_an_episode_is_token_exact_from_template_to_wire(chat_backend):
    from thoughtmdp.episodes.builder import EpisodeBuilder

    tokenizer = chat_backend.tokenizer
    recording = RecordingBackend(chat_backend)
    builder = EpisodeBuilder(
        TASK,
        recording,
        make_env=lambda: ThoughtMDPEnv(TASK, tokenizer=tokenizer, max_thoughts=3),
        config=episode_config("1x4"),
        sampling=SamplingParams(temperature=1.0, top_p=0.95, max_tokens=6),
        reset_policy=LastThoughtLocalization(max_tokens=8),
    )
    problem = TASK.get_problem("train/1")
    expected_prompt = template_ids(tokenizer, TASK.render_prompt(problem))
    episode = asyncio.run(builder.build(problem.id, seed=3))
    assert [(g.kind, len(g.trajectories)) for g in episode.groups] == [("base", 4), ("reset", 4)]
    for trajectory in episode.trajectories:
        assert trajectory.start.prompt_token_ids == expected_prompt
    [record] = episode.resets
    seed_chain, h = record.seed_trajectory, record.decision.reset_index
    assert h == record.seed_length >= 2
    # the seed's exact token prefix: prompt ids, then its first h* - 1 thoughts' sampled ids
    prefix_ids = list(expected_prompt) + [
        i for t in seed_chain.all_thoughts[: h - 1] for i in t.token_ids
    ]
    arrays = training_arrays([episode], pad_id=chat_backend.pad_id)
    rows = [(g.kind, t) for g in episode.groups for t in g.trajectories]
    for row, (kind, trajectory) in enumerate(rows):
        ids = arrays.input_ids[row][arrays.attention_mask[row]].tolist()
        assert ids[: len(expected_prompt)] == list(expected_prompt)
        if kind == "reset":
            assert trajectory.start.thoughts == seed_chain.all_thoughts[: h - 1]
            assert ids[: len(prefix_ids)] == prefix_ids
            assert int(arrays.prefix_lengths[row]) == len(prefix_ids)
    # the localiser saw the seed chain in the chat format
    question = TASK.render_localizer_prompt(problem, [t.text for t in seed_chain.all_thoughts])
    assert recording.prompts == [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False
        )
    ]
    # the learner receives exactly these ids
    back = decode([bytes(f) for f in encode_episode(episode, actor="a")])
    assert back == episode
    again = training_arrays([back], pad_id=chat_backend.pad_id)
    assert np.array_equal(again.input_ids, arrays.input_ids)
    assert np.array_equal(again.loss_mask, arrays.loss_mask)


def test_vllm_tokenizer_encodes_the_rendered_prompts_to_the_same_ids(chat_model_dir, chat_tok):
    """The tokenizer vLLM's engine loads (VLLMBackend.tokenizer) agrees with transformers'."""
    registry = pytest.importorskip("vllm.tokenizers.registry", reason="vllm is not installed")
    vllm_tok = registry.get_tokenizer(str(chat_model_dir))
    problem = TASK.problems("train")[0]
    question = TASK.render_localizer_prompt(problem, ["8+6=15", "15+5=20 \\boxed{20}"])
    for text in (TASK.render_prompt(problem), question):
        ids = ThoughtMDPEnv(TASK, tokenizer=vllm_tok).chat.encode(text)
        assert ids == template_ids(chat_tok, text)
        rendered = ThoughtMDPEnv(TASK, tokenizer=chat_tok).chat.render(text)
        assert tuple(vllm_tok.encode(rendered, add_special_tokens=False)) == ids
