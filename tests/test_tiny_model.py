"""The tiny test model: size, tokenizer, determinism, LoRA, and what vLLM will need of it."""

from __future__ import annotations

import doctest
import json
import re
import unicodedata

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from thoughtmdp.agents.warmstart import tiny_model
from thoughtmdp.agents.warmstart.tiny_model import build_tiny_model

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir)


def test_model_is_a_tiny_float32_qwen2_with_tied_embeddings(tiny_model_dir, model, tok):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForCausalLM"]
    assert config["torch_dtype"] == "float32"
    assert config["max_position_embeddings"] == 4096
    assert config["tie_word_embeddings"] is True
    assert config["hidden_size"] // config["num_attention_heads"] == 32
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    assert model.dtype == torch.float32
    assert model.lm_head.weight is model.get_input_embeddings().weight
    assert model.config.vocab_size == len(tok) == 512


def test_generation_config_and_tokenizer_agree_on_eos(tiny_model_dir, tok):
    generation = json.loads((tiny_model_dir / "generation_config.json").read_text())
    assert tok.eos_token == tok.pad_token == "<|endoftext|>"
    assert generation["eos_token_id"] == generation["pad_token_id"] == tok.eos_token_id
    assert tok.encode("<|endoftext|>", add_special_tokens=False) == [tok.eos_token_id]
    assert tok.all_special_ids == [tok.eos_token_id]
    assert tok.encode("ab", add_special_tokens=True) == tok.encode("ab", add_special_tokens=False)


def test_thought_delimiter_is_one_normal_token_that_decodes_back(tok):
    (thought_id,) = tok.encode("</thought>", add_special_tokens=False)
    assert not tok.added_tokens_decoder[thought_id].special
    assert thought_id not in tok.all_special_ids
    ids = tok.encode("a</thought>", add_special_tokens=False)
    assert ids == [*tok.encode("a", add_special_tokens=False), thought_id]
    assert tok.decode(ids) == "a</thought>"
    # vLLM detokenises with skip_special_tokens=True; the stop string must survive it.
    assert tok.decode(ids, skip_special_tokens=True) == "a</thought>"


def test_a_reference_chain_encodes_to_few_tokens_and_round_trips(tok):
    chain = "Q: 8+6+5\n8+6=14</thought>14+5=19 \\boxed{19}</thought>"
    ids = tok.encode(chain, add_special_tokens=False)
    assert tok.decode(ids) == chain
    assert len(ids) < len(chain.encode()) * 0.8  # the merges learned something


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40))
def test_any_unicode_text_round_trips(tok, text):
    assume(unicodedata.is_normalized("NFC", text) and "<|endoftext|>" not in text)
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_decomposed_text_decodes_to_its_nfc_form(tok):
    ids = tok.encode("e\u0301t\u00e9", add_special_tokens=False)
    assert tok.decode(ids) == "\u00e9t\u00e9"


def test_build_is_deterministic_in_the_seed(tmp_path):
    first = build_tiny_model(tmp_path / "a", seed=3)
    second = build_tiny_model(tmp_path / "b", seed=3)
    other = build_tiny_model(tmp_path / "c", seed=4)
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir())
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(names)
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert (first / "tokenizer.json").read_bytes() == (other / "tokenizer.json").read_bytes()
    weights = (first / "model.safetensors").read_bytes()
    assert weights != (other / "model.safetensors").read_bytes()


def test_custom_corpus_trains_the_tokenizer_and_sizes_the_vocabulary(tmp_path):
    folder = build_tiny_model(tmp_path, corpus=["ab ab ab abc abc</thought>"] * 3)
    tok = AutoTokenizer.from_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    # 256 bytes, <|endoftext|>, </thought>, and the few merges this corpus allows
    assert 258 < len(tok) < 270
    assert config["vocab_size"] == len(tok)
    assert tok.convert_ids_to_tokens(tok.encode(" abc", add_special_tokens=False)) == ["Ġabc"]
    assert len(tok.encode("</thought>", add_special_tokens=False)) == 1


def test_head_size_below_32_is_rejected(tmp_path):
    message = (
        "head size hidden_size/num_heads must be >= 32 for vLLM's CPU attention, "
        "got 64/4 = 16; use fewer heads"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        build_tiny_model(tmp_path, num_heads=4)
    assert not (tmp_path / "config.json").exists()


def test_hidden_size_must_split_into_heads(tmp_path):
    with pytest.raises(ValueError, match=r"^hidden_size \(96\) must be a multiple of num_heads"):
        build_tiny_model(tmp_path, hidden_size=96, num_heads=5)


def test_a_million_parameters_is_too_many(tmp_path):
    with pytest.raises(ValueError, match=r"^a tiny model must have fewer than 1000000 param"):
        build_tiny_model(tmp_path, hidden_size=256, num_heads=4, intermediate_size=1024)


def test_vocabulary_must_hold_the_byte_alphabet(tmp_path):
    message = "vocab_size must be at least 258 (256 byte tokens, <|endoftext|> and </thought>)"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}, got 100$"):
        build_tiny_model(tmp_path, vocab_size=100)


def test_lora_wraps_every_projection_and_trains_only_the_adapter(tiny_model_dir):
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    lora = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS))
    trainable = {n: p for n, p in lora.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    wrapped = {name.split(".")[-4] for name in trainable}  # ...q_proj.lora_A.default.weight
    assert wrapped == set(LORA_TARGETS)
    # r * (in + out) per projection: four 64x64 attention ones, 64<->128 MLP ones, 2 layers
    assert sum(p.numel() for p in trainable.values()) == 2 * 4 * (4 * 128 + 3 * 192)
    ids = torch.tensor([[5, 6, 7, 8]])
    lora(input_ids=ids, labels=ids).loss.backward()
    assert all(p.grad is None for n, p in lora.named_parameters() if "lora_" not in n)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable.values())


def test_docstring_example_runs():
    result = doctest.testmod(tiny_model, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
