"""The warm start: a tiny model built and fine-tuned on reference chains."""
