"""Verifiable tasks: arithmetic chains, math problems, reasoning-gym generators."""
