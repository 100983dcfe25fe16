"""Run one program in the sandbox and print what happened, one JSON line per isolation level.

Tests start this file as another user (``setpriv``) to see the sandbox as a normal user
sees it: ``python tests/sandbox_as_user.py strict weak < program.py``.
"""

from __future__ import annotations

import json
import sys

from thoughtmdp.envs.sandbox.sandbox import Job, Sandbox, SandboxConfig, SandboxError


def main() -> None:
    source = sys.stdin.read()
    for isolation in sys.argv[1:]:
        box = Sandbox(SandboxConfig(test_timeout=5.0, isolation=isolation))  # type: ignore[arg-type]
        try:
            report = box.run(Job(source, "script", ("",)))
        except SandboxError as exc:
            print(json.dumps({"refused": str(exc)}))
            continue
        outcome = report.outcomes[0]
        result = {"status": outcome.status, "output": outcome.output, "error": outcome.error}
        print(json.dumps({**result, "isolation": report.isolation}))


if __name__ == "__main__":
    main()
