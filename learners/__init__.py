"""The learner: masked policy-gradient loss, LoRA model, DeepSpeed engine, checkpoints."""
