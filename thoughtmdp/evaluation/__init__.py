"""Evaluation of a policy: benchmark suites, greedy held-out passes and the localisation audit."""
