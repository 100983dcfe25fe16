"""Policy backends: vLLM, transformers and a scripted one, and adapter loading."""
