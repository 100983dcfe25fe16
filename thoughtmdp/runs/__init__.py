"""A run's files: metrics, episodes, statistics, plots, summary and progress."""
