"""Policy backends, the rollout loop and the actor process (vLLM, transformers, scripted)."""
