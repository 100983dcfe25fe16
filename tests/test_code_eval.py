"""``thoughtmdp eval-code`` end to end on the fixture problems and samples, as a user runs it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "livecodebench"
PROBLEMS = str(FIXTURES / "problems.jsonl")
SAMPLES = str(FIXTURES / "samples.jsonl")


def eval_code(*args: str) -> subprocess.CompletedProcess[str]:
    command = ["thoughtmdp", "eval-code", "--timeout", "1", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_grades_every_sample_and_writes_lcb_runners_layout(tmp_path: Path) -> None:
    out = tmp_path / "graded.json"
    done = eval_code(
        "--problems", PROBLEMS, "--samples", SAMPLES, "--out", str(out), "-k", "1", "3"
    )
    assert done.returncode == 0, done.stderr
    rows = {line.split()[1]: line for line in done.stdout.splitlines() if "│" in line}
    assert "2 / 3" in rows["abc300_a"] and "0.667" in rows["abc300_a"]
    assert "1 / 3" in rows["cf1990_b"] and "1 / 3" in rows["lc3100"]
    assert "pass@1 = 0.4167 over 4 problems" in done.stdout
    assert "pass@3 = 1.0000 over 4 problems" in done.stdout
    assert "seccomp" in done.stdout
    graded = json.loads(out.read_text(encoding="utf-8"))
    assert [g["question_id"] for g in graded] == ["abc300_a", "cf1990_b", "lc3100", "lc3300"]
    by_id = {g["question_id"]: g for g in graded}
    assert by_id["abc300_a"]["graded_list"] == [True, True, False]
    assert by_id["abc300_a"]["pass@1"] == 2 / 3
    assert set(by_id["lc3100"]) == {"question_id", "code_list", "graded_list", "pass@1", "metadata"}
    verdicts = {qid: [json.loads(m)["verdicts"] for m in g["metadata"]] for qid, g in by_id.items()}
    assert verdicts["abc300_a"][2] == ["wrong_answer"]  # stops at the first failure
    assert verdicts["cf1990_b"][1] == ["passed"] * 3 + ["wrong_answer"]  # exact decimals
    assert verdicts["cf1990_b"][2] == ["time_limit"]
    assert verdicts["lc3100"][2] == ["compile_error"]
    syntax = json.loads(by_id["lc3100"]["metadata"][2])["error_message"]
    assert syntax == "SyntaxError: expected ':' (<solution>, line 2)"  # the model's own line
    assert verdicts["lc3300"] == [["passed"] * 3, ["wrong_answer"], ["runtime_error"]]
    first = json.loads(by_id["lc3300"]["metadata"][1])
    assert first["results"] == [-2] and first["error_code"] == -2
    assert first["error_message"] == "wrong answer: returned [[1, 3]], expected [1, 3]"
    assert first["isolation"]["network"] == "namespace"


def test_splits_and_all_tests(tmp_path: Path) -> None:
    out = tmp_path / "heldout.json"
    done = eval_code(
        "--problems", PROBLEMS, "--samples", SAMPLES, "--split", "heldout", "--all-tests",
        "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    graded = {g["question_id"]: g for g in json.loads(out.read_text(encoding="utf-8"))}
    wrong = json.loads(graded["abc300_a"]["metadata"][2])
    assert len(wrong["verdicts"]) == 3  # every held-out test ran: 3 of 6 private tests
    train = eval_code("--problems", PROBLEMS, "--samples", SAMPLES, "--split", "train")
    assert train.returncode == 0, train.stderr


def test_unreadable_input_is_a_clear_error(tmp_path: Path) -> None:
    missing = eval_code("--problems", PROBLEMS, "--samples", str(tmp_path / "none.jsonl"))
    assert missing.returncode == 1 and "error: no samples file" in missing.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question_id": "abc300_a", "code_list": "print(1)"}\n', encoding="utf-8")
    done = eval_code("--problems", PROBLEMS, "--samples", str(bad))
    assert done.returncode == 1
    assert "bad.jsonl, line 1: field 'code_list' must be a list of program strings" in done.stderr
    bad.write_text('{"question_id": "nope", "code_list": []}\n', encoding="utf-8")
    done = eval_code("--problems", PROBLEMS, "--samples", str(bad))
    assert done.returncode == 1 and "question_id 'nope' is not in" in done.stderr
    bad.write_text("{not json\n", encoding="utf-8")
    done = eval_code("--problems", PROBLEMS, "--samples", str(bad))
    assert done.returncode == 1 and "bad.jsonl, line 1: not valid JSON" in done.stderr


def test_help_lists_eval_code() -> None:
    done = subprocess.run(["thoughtmdp", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "eval-code" in done.stdout


def test_isolation_flag_reaches_the_sandbox(tmp_path: Path, monkeypatch) -> None:
    from thoughtmdp.cli import main
    from thoughtmdp.envs.livecodebench import evaluate

    chosen = []
    real = evaluate.SandboxConfig

    def config(**options):
        chosen.append(options["isolation"])
        return real(**options)

    monkeypatch.setattr(evaluate, "SandboxConfig", config)
    for flag in ([], ["--isolation", "weak"]):
        command = ["eval-code", "--problems", PROBLEMS, "--samples", SAMPLES, "--timeout", "1"]
        assert main([*command, *flag, "--out", str(tmp_path / "out.json")]) == 0
    assert chosen == ["strict", "weak"]
