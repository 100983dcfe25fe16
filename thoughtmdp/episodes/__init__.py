"""Algorithm 2: presets, the episode builder, reset policies, localisation, advantages, arrays.

Also the episode metrics; nothing here imports torch.
"""
