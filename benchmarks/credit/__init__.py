"""The learning benchmark's parts: its runs, statistics, probe of the starting policy, report."""
