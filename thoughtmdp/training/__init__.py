"""``thoughtmdp train``: its settings, processes, progress display and summary."""
