"""Hostile output cannot crash the grader: each sample that defeats it fails, the run goes on.

Every case here once aborted a whole evaluation (``eval-code`` exited with no results, an
RL ``score`` raised); now each grades the one sample as failed, with a reason.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from thoughtmdp.envs.livecodebench.data import DecodeBudget, check_call_tests, decode_tests
from thoughtmdp.envs.livecodebench.grading import CodeTest, Verdict, stdout_matches
from thoughtmdp.envs.livecodebench.judge import judge, verdict
from thoughtmdp.envs.livecodebench.problems import load_problems
from thoughtmdp.envs.livecodebench.programs import prepare_stdin_program
from thoughtmdp.envs.sandbox.cleanup import CleanupTimeout, remove_tree
from thoughtmdp.envs.sandbox.sandbox import Job, Outcome, Sandbox, SandboxConfig
from thoughtmdp.errors import DatasetFieldError

FIXTURES = Path(__file__).parent / "fixtures" / "livecodebench"
DEEP = 5000
FORGE = "import os, sys\nos.write(int(sys.argv[3]), {line!r}.encode())\nos._exit(0)\n"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(SandboxConfig(test_timeout=2.0, memory_bytes=512 << 20))
    yield box
    box.close()


def test_printing_a_signalling_nan_is_a_wrong_answer() -> None:
    assert stdout_matches("sNaN", "0") == (False, "wrong answer on line 1: sNaN != 0")
    assert stdout_matches("1 sNaN", "1 sNaN")[0]  # equal as text, as under lcb_runner


def test_a_program_too_deep_to_rewrite_fails_to_load(sandbox: Sandbox) -> None:
    for depth in (1000, 3000):  # too deep to unparse; too deep to parse
        code = "x = " + "1+" * depth + "1\nprint(x)"
        assert prepare_stdin_program(code) == code  # unchanged, as lcb_runner leaves it
    result = judge(sandbox, "x = " + "1+" * 1000 + "1\nprint(x)", [CodeTest("", "1001")])
    assert [r.verdict for r in result.results] == [Verdict.COMPILE_ERROR]


def test_a_deeply_nested_return_value_is_a_runtime_error(sandbox: Sandbox) -> None:
    deep = Outcome("ok", value="[" * DEEP + "]" * DEEP)
    result = verdict(deep, CodeTest("1", "[]"), call_based=True)
    assert result.verdict is Verdict.RUNTIME_ERROR and "deeper" in result.message
    code = (
        "class Solution:\n    def f(self, n):\n        a = []\n"
        "        for _ in range(n):\n            a = [a]\n        return a\n"
    )
    result = judge(sandbox, code, [CodeTest(str(DEEP), "[]"), CodeTest("1", "[[]]")], "f")
    assert [r.verdict for r in result.results] == [Verdict.RUNTIME_ERROR, Verdict.PASSED]


@pytest.mark.parametrize(
    "forged",
    [
        '{"event": "test", "index": 0, "status": "ok", "error": ' + "[" * DEEP + "]" * DEEP + "}",
        '{"event": "test", "index": 0, "status": "ok", "output": "1", "seconds": 1'
        + "0" * 400 + "}",
    ],
    ids=["deep", "long number"],
)  # fmt: skip
def test_a_forged_report_fails_the_test(sandbox: Sandbox, forged: str) -> None:
    code = FORGE.format(line=forged + "\n")
    result = judge(sandbox, code, [CodeTest("", "1"), CodeTest("", "1")], lcb_compat=False)
    assert [r.verdict for r in result.results] == [Verdict.RUNTIME_ERROR] * 2
    assert "protocol" in result.results[0].message


def test_a_comparison_that_raises_is_a_grader_error() -> None:
    class Exploding(str):
        def strip(self, *args: object) -> str:
            raise RuntimeError("boom")

    result = verdict(Outcome("ok", output=Exploding("1")), CodeTest("", "1"), call_based=False)
    assert result.verdict is Verdict.GRADER_ERROR and result.verdict.lcb_code == -5
    assert "RuntimeError: boom" in result.message


def test_a_deep_folder_left_behind_is_removed(sandbox: Sandbox) -> None:
    code = (
        "import os\nprint(os.getcwd())\nfor _ in range(1500):\n"
        "    os.mkdir('ddd')\n    os.chdir('ddd')\nos.chmod('.', 0)\nprint('done')"
    )
    report = sandbox.run(Job(code, "script", ("",)))
    work, done = (report.outcomes[0].output or "").split()
    assert done == "done" and not os.path.exists(work)


def test_remove_tree_handles_depth_locks_links_and_a_deadline(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    top = tmp_path / "tree"
    top.mkdir()
    folder = os.open(top, os.O_RDONLY)
    for _ in range(1100):  # deeper than the recursion limit and than PATH_MAX allows
        os.close(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=folder))
        os.symlink(outside, "link", dir_fd=folder)
        os.mkdir("ddd", dir_fd=folder)
        below = os.open("ddd", os.O_RDONLY, dir_fd=folder)
        os.close(folder)
        folder = below
    os.chmod(folder, 0)
    os.close(folder)
    remove_tree(str(top), 30.0)
    assert not top.exists() and outside.read_text() == "keep"
    (tmp_path / "slow").mkdir()
    with pytest.raises(CleanupTimeout):
        remove_tree(str(tmp_path / "slow"), -1.0)


def test_long_integers_are_read_as_lcb_runner_reads_them(sandbox: Sandbox) -> None:
    big = "7" * 5000  # past the interpreter's default 4,300 digits, within lcb_runner's 50,000
    check_call_tests([CodeTest(big, big)], "here")
    code = "class Solution:\n    def f(self, x):\n        return x\n"
    result = judge(sandbox, code, [CodeTest(big, big)], "f")
    assert [r.verdict for r in result.results] == [Verdict.PASSED]


def test_deep_json_in_a_problem_field_is_named(tmp_path: Path) -> None:
    row = json.loads((FIXTURES / "problems.jsonl").read_text().splitlines()[0])
    row["public_test_cases"] = "[" * DEEP + "]" * DEEP
    path = tmp_path / "deep.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(DatasetFieldError, match=r"line 1: field 'public_test_cases' nests JSON"):
        load_problems(path)


def test_compressed_fields_share_one_budget() -> None:
    import base64
    import pickle
    import zlib

    text = json.dumps([{"input": "1" * 60_000, "output": "1", "testtype": "stdin"}])
    field = base64.b64encode(zlib.compress(pickle.dumps(text))).decode()
    budget = DecodeBudget(total=100_000)
    decode_tests(field, path="p", line=1, field="private_test_cases", budget=budget)
    with pytest.raises(DatasetFieldError, match="inflate past 100000 bytes in all"):
        decode_tests(field, path="p", line=2, field="private_test_cases", budget=budget)


def test_eval_code_keeps_results_for_a_question_id_with_markup(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (FIXTURES / "problems.jsonl").read_text().splitlines()]
    row = next(r for r in rows if r["question_id"] == "abc300_a")
    row["question_id"] = "[/bold]abc[link=x]"
    problems, samples, out = tmp_path / "p.jsonl", tmp_path / "s.jsonl", tmp_path / "out.json"
    problems.write_text(json.dumps(row) + "\n")
    samples.write_text(json.dumps({"question_id": row["question_id"], "code_list": ["x"]}) + "\n")
    command = ["thoughtmdp", "eval-code", "--timeout", "1", "--problems", str(problems)]
    command += ["--samples", str(samples), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "[/bold]abc[link=x]" in done.stdout
    assert json.loads(out.read_text())[0]["graded_list"] == [False]
