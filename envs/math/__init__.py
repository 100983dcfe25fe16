"""Math tasks: problem files, answer types and the math-verify verifier."""
