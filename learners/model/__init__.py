"""The LoRA policy: loading, token log-probs, the shared-prefix forward, optimiser engines."""
