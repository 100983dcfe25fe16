"""The CPI theory benchmark's parts: the fork MDP, one CPI iteration, the results page."""
