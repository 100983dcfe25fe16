"""A tiny, randomly initialised Qwen2 model with a locally trained tokenizer, for tests.

Nothing is downloaded: the weights come from a seeded initialisation and the byte-level
BPE tokenizer is trained on a small corpus of ArithChain chains, the rollout prompt and some
plain English. The model has the Qwen2 architecture so every backend (transformers, vLLM)
and PEFT's LoRA treat it like a real checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)
from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from thoughtmdp.envs.arith_chain import ArithChainTask, reference_thoughts
from thoughtmdp.mdp.prompts import ROLLOUT_TEMPLATE, THOUGHT_DELIMITER, render_prompt

EOS_TOKEN = "<|endoftext|>"
MIN_HEAD_SIZE = 32  # vLLM's CPU attention kernels support head sizes 32 and up
MAX_PARAMETERS = 1_000_000
MAX_POSITIONS = 4096
BYTE_ALPHABET = 256
# Qwen2's pre-tokenizer: ``transformers`` 5 loads any tokenizer of a ``qwen2`` checkpoint as
# ``Qwen2Tokenizer``, which imposes this pipeline, so the trained one must match it exactly.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

GENERIC_TEXT = """\
The quick brown fox jumps over the lazy dog. A step of reasoning states one fact,
one calculation or one deduction, and the next step builds on it. We add the numbers,
then subtract, then multiply; the result of each operation is written after an equals
sign. When the final result is known, it is written inside a box so that a checker can
read it. If a step is wrong, every later step inherits the mistake, so it pays to check
each one. Questions, answers, thoughts and problems: the model reads the prompt and writes
its solution one thought at a time. Numbers such as 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12,
15, 20, 25, 42, 100 and 1000 appear often. Therefore the answer is the sum of the parts.
Let us think about this carefully. First, we need to find the value of the expression.
Next, we simplify both sides of the equation and compare them. Since the total is even,
the remainder must be zero. Hence the statement is true, and the proof is complete.
Suppose that x is a positive integer and y is twice as large as x; then x plus y equals
three times x. Consider the triangle with sides three, four and five: it is a right
triangle, because nine plus sixteen is twenty five. The probability of drawing a red ball
from the bag is the number of red balls divided by the number of all balls in the bag.
A function takes an input and returns an output; a program calls the function many times.
Python, numbers, strings, lists and dictionaries are common types of values in code.
How many apples are left after she gives away three of the seven apples she had? Four.
Which number comes next in the sequence two, four, eight, sixteen? Thirty two.
Why does the method work? Because every step keeps the value of the expression unchanged.
What is the capital of France? Paris. Who wrote the letter? The teacher wrote it.
"""


def default_corpus(num_problems: int = 200) -> Iterator[str]:
    """Training text for the tiny tokenizer: prompts and reference chains, plus plain prose.

    Args:
        num_problems: ArithChain problems per configuration (two configurations are used).

    Returns:
        An iterator of text documents.
    """
    yield GENERIC_TEXT
    yield ROLLOUT_TEMPLATE
    for num_steps, operators in ((2, "+-"), (4, "+-*")):
        task = ArithChainTask(num_steps=num_steps, operators=operators, seed=0)
        rng = np.random.default_rng(num_steps)
        for problem in task.problems("train")[:num_problems]:
            thoughts = reference_thoughts(problem, error_rate=0.2, rng=rng)
            chain = "".join(t + THOUGHT_DELIMITER for t in thoughts)
            yield render_prompt(problem.question) + chain


def build_tokenizer(vocab_size: int, corpus: Iterable[str] | None = None) -> Tokenizer:
    """Train a byte-level BPE tokenizer with ``</thought>`` as one normal added token.

    The pipeline is Qwen2's (NFC normalisation, its split pattern, byte-level BPE), so any
    Unicode text encodes and decodes back to its NFC form.

    Args:
        vocab_size: Target size of the vocabulary, both added tokens included; a small corpus
            may leave it smaller (BPE stops when no pair occurs twice).
        corpus: Training documents; ``None`` uses :func:`default_corpus`.

    Returns:
        The trained tokenizer; ``<|endoftext|>`` is its only special token.

    Raises:
        ValueError: If ``vocab_size`` cannot hold the 256 byte tokens and the two added ones.
    """
    if vocab_size < BYTE_ALPHABET + 2:
        raise ValueError(
            f"vocab_size must be at least {BYTE_ALPHABET + 2} (256 byte tokens, {EOS_TOKEN} "
            f"and {THOUGHT_DELIMITER}), got {vocab_size}"
        )
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 1,  # leaves room for the delimiter added below
        min_frequency=2,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # The delimiter is added whole below, so its pieces should not use up merges.
    documents = (
        doc.replace(THOUGHT_DELIMITER, "\n")
        for doc in (default_corpus() if corpus is None else corpus)
    )
    tokenizer.train_from_iterator(documents, trainer=trainer)
    # A normal (non-special) token: vLLM drops special tokens when detokenising, and the
    # stop string must survive into the decoded text.
    tokenizer.add_tokens([AddedToken(THOUGHT_DELIMITER, normalized=False, special=False)])
    return tokenizer


def wrap_tokenizer(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    """Wrap a trained tokenizer for ``transformers``, with ``<|endoftext|>`` as EOS and PAD.

    Args:
        tokenizer: A tokenizer from :func:`build_tokenizer`.

    Returns:
        The wrapped tokenizer.

    Raises:
        ValueError: If ``</thought>`` does not round-trip as a single token.
    """
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        model_max_length=MAX_POSITIONS,
        clean_up_tokenization_spaces=False,
    )
    sample = "a" + THOUGHT_DELIMITER
    ids = wrapped.encode(sample, add_special_tokens=False)
    delimiter_ids = wrapped.encode(THOUGHT_DELIMITER, add_special_tokens=False)
    if len(delimiter_ids) != 1 or wrapped.decode(ids) != sample:
        raise ValueError(
            f"expected {THOUGHT_DELIMITER!r} to be one token that decodes back, got ids "
            f"{delimiter_ids} and {wrapped.decode(ids)!r} for {sample!r}"
        )
    return wrapped


def tiny_config(
    vocab_size: int, hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int
) -> Qwen2Config:
    """The Qwen2 configuration of a tiny model.

    Args:
        vocab_size: Rows of the (tied) embedding.
        hidden_size: Width of the residual stream.
        num_layers: Decoder layers.
        num_heads: Attention heads (query and key/value alike).
        intermediate_size: Width of the MLP.

    Returns:
        The configuration, float32, tied embeddings, 4096 positions.

    Raises:
        ValueError: If the head size is not an integer of at least 32.
    """
    if num_heads < 1 or hidden_size % num_heads:
        raise ValueError(
            f"hidden_size ({hidden_size}) must be a multiple of num_heads ({num_heads})"
        )
    head_size = hidden_size // num_heads
    if head_size < MIN_HEAD_SIZE:
        raise ValueError(
            f"head size hidden_size/num_heads must be >= {MIN_HEAD_SIZE} for vLLM's CPU "
            f"attention, got {hidden_size}/{num_heads} = {head_size}; use fewer heads"
        )
    return Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=MAX_POSITIONS,
        max_window_layers=num_layers,
        tie_word_embeddings=True,
        dtype="float32",
        architectures=["Qwen2ForCausalLM"],
    )


def build_tiny_model(
    path: str | Path,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int = 128,
    vocab_size: int = 512,
    seed: int = 0,
    corpus: Iterable[str] | None = None,
) -> Path:
    """Build and save a random tiny Qwen2 model and its tokenizer into ``path``.

    The same arguments always produce the same weights and tokenizer files. The model's
    vocabulary matches the trained tokenizer (``vocab_size`` unless the corpus is too small).

    Args:
        path: Folder to save into (created if missing).
        hidden_size: Width of the residual stream.
        num_layers: Decoder layers.
        num_heads: Attention heads; ``hidden_size / num_heads`` must be at least 32.
        intermediate_size: Width of the MLP.
        vocab_size: Target vocabulary size, both added tokens included.
        seed: Seed of the weight initialisation.
        corpus: Tokenizer training documents; ``None`` uses :func:`default_corpus`.

    Returns:
        The folder, loadable with ``AutoModelForCausalLM`` and ``AutoTokenizer``.

    Raises:
        ValueError: On a head size below 32, a vocabulary too small for the byte alphabet,
            or a model of a million parameters or more.

    >>> import tempfile
    >>> from transformers import AutoTokenizer
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     tok = AutoTokenizer.from_pretrained(build_tiny_model(tmp))
    >>> tok.decode(tok.encode("8+6=14</thought>", add_special_tokens=False))
    '8+6=14</thought>'
    """
    tokenizer = wrap_tokenizer(build_tokenizer(vocab_size, corpus))
    config = tiny_config(len(tokenizer), hidden_size, num_layers, num_heads, intermediate_size)
    model = init_model(config, tokenizer, seed)
    n_params = sum(p.numel() for p in model.parameters())
    if n_params >= MAX_PARAMETERS:
        raise ValueError(
            f"a tiny model must have fewer than {MAX_PARAMETERS} parameters, these sizes give "
            f"{n_params}; shrink hidden_size, intermediate_size, num_layers or vocab_size"
        )
    return save_model(model, tokenizer, path)


def init_model(
    config: Qwen2Config, tokenizer: PreTrainedTokenizerFast, seed: int
) -> Qwen2ForCausalLM:
    """A seeded random model of ``config`` whose end and padding token is the tokenizer's EOS.

    The global torch random state is left as it was.
    """
    config.eos_token_id = config.pad_token_id = tokenizer.eos_token_id
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Qwen2ForCausalLM(config).eval()


def save_model(
    model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast, path: str | Path
) -> Path:
    """Save a tiny model and its tokenizer so that transformers, PEFT and vLLM load them.

    Args:
        model: A float32 model of :func:`tiny_config`.
        tokenizer: Its tokenizer (from :func:`wrap_tokenizer`).
        path: Folder to save into (created if missing).

    Returns:
        The folder.
    """
    eos_id = tokenizer.eos_token_id
    model.generation_config = GenerationConfig(
        eos_token_id=eos_id, pad_token_id=eos_id, do_sample=True
    )
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    # Older readers (transformers 4.x, as in vLLM images) look for ``torch_dtype`` and map
    # ``Qwen2Tokenizer`` to the fast class that reads tokenizer.json as it is.
    _update_json(folder / "config.json", torch_dtype="float32")
    _update_json(folder / "tokenizer_config.json", tokenizer_class="Qwen2Tokenizer")
    return folder


def _update_json(file: Path, **values: str) -> None:
    data = json.loads(file.read_text())
    data.update(values)
    file.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
