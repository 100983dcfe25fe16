"""LiveCodeBench: problems, programs, grading and the ``eval-code`` evaluation."""
