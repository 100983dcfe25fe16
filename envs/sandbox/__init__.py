"""A sandbox for untrusted programs: each in its own confined child process."""
