"""Programs see a minimal file system, as root and as a normal user, and never the caller's uid.

Each hostile program tries to read host files outside its folder (a world-readable file
the test makes, the repository's README, a user's private file), to list ``/``, ``/home``
and ``/sys``, and to write to host paths. As root the sandbox runs in this process; as a
normal user (uid :data:`USER`) it runs in a helper started with ``setpriv``, inside a
private mount namespace where the interpreter (installed under root's private home) is
made reachable for that user.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from thoughtmdp.envs.sandbox.sandbox import Job, Sandbox, SandboxConfig

ROOT = Path(__file__).resolve().parents[1]
USER = 1000
IS_ROOT = os.geteuid() == 0
TOOLS = all(shutil.which(tool) for tool in ("unshare", "setpriv", "mount", "chroot"))
needs_root_tools = pytest.mark.skipif(
    not (IS_ROOT and TOOLS), reason="switching to another user needs root, unshare and setpriv"
)
PROBE = """
import json, os
def attempt(action):
    try:
        action()
        return "allowed"
    except OSError:
        return "denied"
def write(path):
    with open(path, "w") as file:
        file.write("x")
paths = json.loads({paths!r})
print(json.dumps({{
    "uid": os.getuid(),
    "read": {{p: attempt(lambda p=p: open(p).read()) for p in paths["read"]}},
    "write": {{p: attempt(lambda p=p: write(p)) for p in paths["write"]}},
    "list": {{d: sorted(os.listdir(d)) if os.path.isdir(d) else "absent"
             for d in ("/", "/home", "/sys")}},
}}))
"""


@pytest.fixture(scope="module")
def host() -> Iterator[dict[str, Path]]:
    """Host files outside every folder the sandbox used to mask: world-readable ones, a
    world-writable folder, and a private home of :data:`USER` (as root)."""
    folder = Path(tempfile.mkdtemp(prefix="thoughtmdp-host-", dir="/home" if IS_ROOT else None))
    try:
        folder.chmod(0o755)
        (folder / "expected_outputs.json").write_text('{"secret": 42}')
        (folder / "expected_outputs.json").chmod(0o644)
        (folder / "drop").mkdir(mode=0o777)
        (folder / "drop").chmod(0o777)
        home = folder / "home"
        home.mkdir(mode=0o700)
        (home / "token").write_text("user secret")
        (home / "token").chmod(0o600)
        if IS_ROOT:
            for path in (home, home / "token"):
                os.chown(path, USER, USER)
        yield {"folder": folder, "home": home}
    finally:
        shutil.rmtree(folder)


def probe_source(host: dict[str, Path]) -> str:
    folder, home = host["folder"], host["home"]
    paths = {
        "read": [str(folder / "expected_outputs.json"), str(ROOT / "README.md"),
                 str(home / "token"), "/etc/passwd"],
        "write": [str(folder / "drop" / "out.txt"), str(home / "out.txt"),
                  str(ROOT / "escape.txt"), "/escape.txt", "../escape.txt"],
    }  # fmt: skip
    return PROBE.format(paths=json.dumps(paths))


def assert_confined(seen: dict, host: dict[str, Path]) -> None:
    assert set(seen["read"].values()) == {"denied"}, seen["read"]
    assert set(seen["write"].values()) == {"denied"}, seen["write"]
    assert seen["list"]["/home"] == "absent" and seen["list"]["/sys"] == "absent"
    assert not {"home", "sys", "proc", "srv", "boot", "var"} & set(seen["list"]["/"])
    assert not list((host["folder"] / "drop").iterdir())
    assert not (host["home"] / "out.txt").exists() and not (ROOT / "escape.txt").exists()


def test_as_root_the_program_sees_no_host_file(host: dict[str, Path]) -> None:
    if not IS_ROOT:
        pytest.skip("as a normal user see test_as_a_normal_user_the_program_sees_no_host_file")
    box = Sandbox(SandboxConfig(test_timeout=5.0))
    report = box.run(Job(probe_source(host), "script", ("",)))
    assert report.outcomes[0].status == "ok", report.outcomes[0]
    assert_confined(json.loads(report.outcomes[0].output or ""), host)
    assert report.isolation["view"] == "minimal (pivot_root)", report.isolation


def as_user(source: str, *isolation: str, chroot: bool = False) -> list[dict]:
    """Run ``source`` in the sandbox as :data:`USER`; one result per isolation level.

    With ``chroot``, the helper runs in a chroot, where the kernel refuses new user
    namespaces, as on a machine that does not allow them.
    """
    script = _reachable_python_script()
    if chroot:
        script += 'mount --rbind / /srv\ncd /\nset -- chroot /srv "$@"\n'
    script += f'exec "$@" setpriv --reuid {USER} --regid {USER} --clear-groups --inh-caps=-all '
    script += f"{sys.executable} {ROOT / 'tests' / 'sandbox_as_user.py'} {' '.join(isolation)}"
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-ec", script],
        input=source, capture_output=True, text=True, timeout=120, cwd="/", check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _reachable_python_script() -> str:
    """Shell lines that make the interpreter reachable for :data:`USER` (private mounts)."""
    hidden = next(
        (p for p in Path(sys.base_prefix).parents if not os.stat(p).st_mode & 0o001), None
    )
    if hidden is None:
        return ""
    keep = hidden / Path(sys.base_prefix).relative_to(hidden).parts[0]
    return (
        "mount -t tmpfs -o size=1m,mode=0755 tmpfs /mnt\n"
        f"mkdir /mnt/keep && mount --bind {keep} /mnt/keep\n"
        f"mount -t tmpfs -o size=1m,mode=0755 tmpfs {hidden}\n"
        f"mkdir {keep} && mount --move /mnt/keep {keep}\n"
    )


@needs_root_tools
def test_as_a_normal_user_the_program_sees_no_host_file(host: dict[str, Path]) -> None:
    (result,) = as_user(probe_source(host), "strict")
    assert result["status"] == "ok", result
    seen = json.loads(result["output"])
    assert seen["uid"] != USER  # not the caller's uid: the overflow user of its namespace
    assert_confined(seen, host)
    assert result["isolation"]["view"] == "minimal (pivot_root)", result["isolation"]
    assert "user" in result["isolation"]["namespaces"]


@needs_root_tools
def test_without_user_namespaces_a_normal_user_is_refused_unless_weak() -> None:
    strict, weak = as_user("import os\nprint(os.getuid())", "strict", "weak", chroot=True)
    assert strict["refused"].startswith("the sandbox refuses to run untrusted programs here: ")
    assert 'SandboxConfig(isolation="weak")' in strict["refused"]
    assert "\n" not in strict["refused"]
    assert weak["status"] == "ok" and weak["output"] == f"{USER}\n"
    assert weak["isolation"]["view"].startswith("host")


def test_the_isolation_level_is_checked() -> None:
    message = "SandboxConfig.isolation must be 'strict' or 'weak', got 'none'"
    with pytest.raises(ValueError, match=f"^{message}$"):
        SandboxConfig(isolation="none")  # type: ignore[arg-type]
