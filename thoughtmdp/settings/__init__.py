"""Every configuration dataclass (torch-free) and the YAML/override loader."""
