"""The ``code`` verifier: the three test formats, scoring, code extraction and reward hacking."""

from __future__ import annotations

import textwrap

import pytest

from rewards import RewardError, RewardInput, RewardOutput, get_reward
from rewards.code import extract_code, infer_format

CODE = get_reward("code", timeout_s=8.0, per_test_timeout_s=1.0)

ADD_TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(2, 2) == 4"]
GOOD_ADD = "def add(a, b):\n    return a + b\n"
HALF_ADD = "def add(a, b):\n    return a + b if a > 0 else 99\n"  # fails the second test only


def run(code: str, tests: object, reward=CODE, **metadata: object) -> RewardOutput:
    return reward.score(RewardInput(prompt="", completion=code, reference=tests, metadata=dict(metadata)))


# --- formats and scoring -----------------------------------------------------------------------


def test_assert_format_fraction_and_all_or_nothing() -> None:
    good = run(GOOD_ADD, ADD_TESTS, test_format="assert")
    assert (good.score, good.correct, good.error) == (1.0, True, None)
    assert good.details["passed"] == 3 and good.details["total"] == 3
    half = run(HALF_ADD, ADD_TESTS)
    assert half.score == pytest.approx(2 / 3) and not half.correct
    strict = get_reward("code", scoring="all_or_nothing")
    assert run(HALF_ADD, ADD_TESTS, reward=strict).score == 0.0
    assert run(GOOD_ADD, ADD_TESTS, reward=strict).score == 1.0


def test_assert_setup_and_multi_statement_tests() -> None:
    tests = ["import math\nassert add(1, 1) == 2\nassert add(math.floor(1.5), 1) == 2"]
    out = run(GOOD_ADD, tests)
    assert out.details["total"] == 2 and out.score == 1.0
    out = run("def area(r):\n    return PI * r * r\n", ["assert area(1) == 3"], setup="PI = 3")
    assert out.score == 1.0


def test_humaneval_format_counts_each_assert() -> None:
    check = textwrap.dedent(
        """
        METADATA = {}

        def check(candidate):
            expected = 4
            assert candidate(2) == expected
            assert candidate(3) == 6
            for x in range(3):
                assert candidate(x) == 2 * x
            assert candidate(0) == 1
        """
    )
    out = run("def double(x):\n    return 2 * x\n", check, test_format="humaneval", entry_point="double")
    assert out.details["total"] == 4 and out.details["passed"] == 3
    missing = run("def other(x):\n    return x\n", check, test_format="humaneval", entry_point="double")
    assert missing.score == 0.0


def test_humaneval_code_prefix_for_body_only_completions() -> None:
    prefix = 'def double(x):\n    """Return twice x."""\n'
    check = "def check(candidate):\n    assert candidate(4) == 8\n"
    out = run("    return x * 2\n", check, test_format="humaneval", entry_point="double", code_prefix=prefix)
    assert out.score == 1.0


# HumanEval/32: the test calls the helper ``poly`` that the prompt defines beside the entry point.
FIND_ZERO_PROMPT = textwrap.dedent(
    '''
    import math


    def poly(xs: list, x: float):
        """
        Evaluates polynomial with coefficients xs at point x.
        return xs[0] + xs[1] * x + xs[1] * x^2 + .... xs[n] * x^n
        """
        return sum([coeff * math.pow(x, i) for i, coeff in enumerate(xs)])


    def find_zero(xs: list):
        """ xs are coefficients of a polynomial.
        find_zero find x such that poly(x) = 0.
        find_zero returns only only one zero point, even if there are many.
        Moreover, find_zero only takes list xs having even number of coefficients
        and largest non zero coefficient as it guarantees
        a solution.
        >>> round(find_zero([1, 2]), 2) # f(x) = 1 + 2x
        -0.5
        >>> round(find_zero([-6, 11, -6, 1]), 2) # (x - 1)(x - 2)(x - 3)
        1.0
        """
    '''
).lstrip("\n")
FIND_ZERO_SOLUTION = (
    "    begin, end = -1., 1.\n"
    "    while poly(xs, begin) * poly(xs, end) > 0:\n"
    "        begin *= 2.0\n"
    "        end *= 2.0\n"
    "    while end - begin > 1e-10:\n"
    "        center = (begin + end) / 2.0\n"
    "        if poly(xs, center) * poly(xs, begin) > 0:\n"
    "            begin = center\n"
    "        else:\n"
    "            end = center\n"
    "    return begin\n"
)
FIND_ZERO_TEST = textwrap.dedent(
    """
    METADATA = {}


    def check(candidate):
        import math
        import random
        rng = random.Random(42)
        import copy
        for _ in range(100):
            ncoeff = 2 * rng.randint(1, 4)
            coeffs = []
            for _ in range(ncoeff):
                coeff = rng.randint(-10, 10)
                if coeff == 0:
                    coeff = 1
                coeffs.append(coeff)
            solution = candidate(copy.deepcopy(coeffs))
            assert math.fabs(poly(coeffs, solution)) < 1e-4
    """
)


def test_humaneval_tests_see_the_candidate_module_helpers() -> None:
    """HumanEval/32: ``check`` calls ``poly``, defined by the prompt beside the entry point ``find_zero``."""
    meta = {"test_format": "humaneval", "entry_point": "find_zero"}
    completion_style = run(FIND_ZERO_SOLUTION, FIND_ZERO_TEST, code_prefix=FIND_ZERO_PROMPT, **meta)
    assert (completion_style.score, completion_style.correct) == (1.0, True), completion_style.details.get("test_errors")
    full_program = run(f"```python\n{FIND_ZERO_PROMPT}{FIND_ZERO_SOLUTION}```", FIND_ZERO_TEST, **meta)
    assert (full_program.score, full_program.correct) == (1.0, True), full_program.details.get("test_errors")
    wrong = run("    return 0.0\n", FIND_ZERO_TEST, code_prefix=FIND_ZERO_PROMPT, **meta)
    assert wrong.score == 0.0 and "AssertionError" in wrong.details["test_errors"][0]


def test_humaneval_check_may_call_the_entry_point_by_its_own_name() -> None:
    check = "def check(candidate):\n    assert candidate(2) == 4\n    assert double(3) == 6\n    assert double is candidate\n"
    out = run("def double(x):\n    return 2 * x\n", check, test_format="humaneval", entry_point="double")
    assert (out.score, out.details["passed"], out.details["total"]) == (1.0, 3, 3), out.details.get("test_errors")
    # A check without asserts to split runs whole, ``check(candidate)`` as one test, in the same namespace.
    check_fn = "def check(candidate):\n    if double(3) != 6 or poly([1, 2], 1.0) != 3.0:\n        raise ValueError\n"
    code = "def poly(xs, x):\n    return sum(c * x ** i for i, c in enumerate(xs))\ndef double(x):\n    return 2 * x\n"
    out = run(code, check_fn, test_format="humaneval", entry_point="double")
    assert (out.score, out.details["total"]) == (1.0, 1), out.details.get("test_errors")


@pytest.mark.parametrize("called_as", ["double(3) == 6", "helper() == 6", "candidate(3) == 6"])
def test_humaneval_guard_covers_names_the_test_calls(called_as: str) -> None:
    hack = ("class A:\n    def __eq__(self, o): return True\n"
            "def helper():\n    return A()\ndef double(x):\n    return A()\n")
    check = f"def check(candidate):\n    assert {called_as}\n"
    out = run(hack, check, test_format="humaneval", entry_point="double")
    assert out.score == 0.0 and "UntrustedValue" in out.details["test_errors"][0], out.details.get("test_errors")


def test_humaneval_entry_point_defined_outside_solution_is_still_guarded() -> None:
    hack = ("class A:\n    def __eq__(self, o): return True\n"
            "exec(compile('def double(x):\\n    return A()\\n', 'elsewhere.py', 'exec'))\n")
    check = "def check(candidate):\n    assert double(3) == 6\n    assert candidate(3) == 6\n"
    out = run(hack, check, test_format="humaneval", entry_point="double")
    assert out.score == 0.0 and out.details["total"] == 2, out.details


def test_humaneval_exiting_candidate_gets_no_namespace() -> None:
    code = "def double(x):\n    return 2 * x\nimport sys\nsys.exit(0)\n"
    check = "def check(candidate):\n    assert double(3) == 6\n    assert candidate(3) == 6\n"
    out = run(code, check, test_format="humaneval", entry_point="double")
    assert out.score == 0.0 and out.details["total"] == 2


def test_stdio_format() -> None:
    cases = [
        {"input": "1 2\n", "output": "3\n"},
        {"input": "10 20\n", "output": "30"},
        {"input": "0.1 0.2\n", "output": "0.3"},  # float tolerance
        {"input": "5 5\n", "output": "11\n"},  # the expected output is wrong: fails
    ]
    program = "a, b = map(float, input().split())\ns = a + b\nprint(int(s) if s.is_integer() else s)\n"
    out = run(program, cases, test_format="stdio")
    assert out.details["total"] == 4 and out.details["passed"] == 3
    assert out.details["test_errors"][3] == "wrong answer"


def test_stdio_runtime_error_and_timeout_per_case() -> None:
    cases = [{"input": "1\n", "output": "1"}, {"input": "0\n", "output": "x"}, {"input": "2\n", "output": "2"}]
    program = "n = int(input())\nif n == 0:\n    while True: pass\nprint(1 // (n - 2) * 0 + n)\n"
    out = run(program, cases, test_format="stdio")
    assert out.details["passed"] == 1
    errors = out.details["test_errors"]
    assert errors[1] == "timeout" and errors[2].startswith("exit status")


@pytest.mark.parametrize(
    "reference, metadata, expected",
    [
        (["assert f(1) == 1"], {}, "assert"),
        ("assert f(1) == 1", {}, "assert"),
        ("def check(candidate):\n    assert candidate(1)", {}, "humaneval"),
        ([{"input": "", "output": ""}], {}, "stdio"),
        ([{"input": "", "output": ""}], {"test_format": "stdio"}, "stdio"),
    ],
)
def test_format_inference(reference: object, metadata: dict, expected: str) -> None:
    assert infer_format(reference, metadata) == expected


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("def f(): pass", "def f(): pass"),
        ("Here:\n```python\ndef f():\n    return 1\n```\nDone.", "def f():\n    return 1\n"),
        ("```\nprint(1)\n```\nand\n```py\nprint(2)\n```", "print(2)\n"),
        ("```python\nA\n```\n```text\nB\n```", "A\n"),
        ("<think>```python\nBAD\n```</think>```python\nGOOD\n```", "GOOD\n"),
        ("```python\ntruncated = 1\n", "truncated = 1\n"),
    ],
)
def test_extract_code(completion: str, expected: str) -> None:
    assert extract_code(completion) == expected


def test_fenced_completion_is_scored() -> None:
    completion = f"<think>try \n```python\ndef add(a,b): return 0\n```</think>\nSolution:\n```python\n{GOOD_ADD}```"
    assert run(completion, ADD_TESTS).score == 1.0


# --- bad inputs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reference, metadata",
    [
        (None, {}),
        (42, {}),
        ([], {}),
        ([1, 2], {"test_format": "assert"}),
        ([{"input": "1"}], {"test_format": "stdio"}),
        ("def check(candidate): pass", {"test_format": "humaneval"}),  # no entry_point
        (["assert True"] * 1001, {}),
        (["assert True"], {"test_format": "pytest"}),
    ],
)
def test_bad_references_score_zero_with_error(reference: object, metadata: dict) -> None:
    out = run(GOOD_ADD, reference, **metadata)
    assert out.score == 0.0 and out.error and not out.correct


def test_syntax_error_in_tests_is_reported() -> None:
    out = run(GOOD_ADD, ["assert add(1, 2) == 3", "assert add(1,"])
    assert out.score == 0.0 and out.error


@pytest.mark.parametrize(
    "completion",
    ["", "   ", "def add(a, b)\n    return a + b", "\x00\x00", "caf\udce9 = 1", "x = '" + "a" * 300_000 + "'"],
)
def test_broken_candidates_score_zero(completion: str) -> None:
    out = run(completion, ADD_TESTS)
    assert out.score == 0.0 and not out.correct


def test_load_error_after_definitions_still_runs_tests() -> None:
    out = run(GOOD_ADD + "print(undefined_name)\n", ADD_TESTS)
    assert out.score == 1.0 and "NameError" in out.details["load_error"]


# --- reward hacking ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exit_call", ["import sys\nsys.exit(0)", "exit(0)", "raise SystemExit", "import os\nos._exit(0)", "raise KeyboardInterrupt"]
)
def test_exiting_before_tests_scores_zero(exit_call: str) -> None:
    out = run(GOOD_ADD + exit_call + "\n", ADD_TESTS)
    assert out.score == 0.0 and not out.correct


def test_exit_inside_a_test_fails_that_test() -> None:
    code = "import sys\ndef add(a, b):\n    if a < 0:\n        sys.exit(0)\n    return a + b\n"
    out = run(code, ADD_TESTS)
    assert out.details["passed"] == 2 and out.score == pytest.approx(2 / 3)


def test_forged_reports_score_zero() -> None:
    forge = textwrap.dedent(
        """
        import os, json
        line = ("deadbeef" * 4 + " " + json.dumps({"passed": [True, True, True]}) + "\\n").encode()
        for fd in range(1, 20):
            try:
                os.write(fd, line)
            except OSError:
                pass
        os._exit(0)
        """
    )
    assert run(forge, ADD_TESTS).score == 0.0


def test_closing_the_result_channel_scores_zero() -> None:
    code = GOOD_ADD + "import os\nos.closerange(1, 4096)\n"
    assert run(code, ADD_TESTS).score == 0.0


def test_monkeypatching_harness_modules_changes_nothing() -> None:
    patch = "import os, json, builtins\nos.write = lambda *a: 0\njson.dumps = lambda *a, **k: '{}'\nbuiltins.print = None\n"
    assert run(patch + "def add(a, b):\n    return -7\n", ADD_TESTS).score == 0.0
    assert run(patch + GOOD_ADD, ADD_TESTS).score == 1.0  # and the honest report still gets through


@pytest.mark.parametrize(
    "hack",
    [
        "class A:\n    def __eq__(self, o): return True\ndef add(a, b): return A()",
        "class I(int):\n    def __eq__(self, o): return True\ndef add(a, b): return I(0)",
        "class A:\n    def __eq__(self, o): return True\ndef add(a, b): return [A()]",
        "class A:\n    __eq__ = lambda s, o: True\ndef add(a, b):\n    yield A()",
        "from fractions import Fraction\nFraction.__eq__ = lambda s, o: True\ndef add(a, b): return Fraction(0)",
        ("class M(type):\n    pass\nclass A(metaclass=M):\n    def __ne__(s, o): return False\n"
         "    def __eq__(s, o): return True\ndef add(a, b): return A()"),
    ],
)
def test_always_equal_objects_fail(hack: str) -> None:
    tests = ADD_TESTS if "yield" not in hack else ["assert list(add(1, 2)) == [3]"]
    assert run(hack, tests).score == 0.0


def test_return_type_guard_allows_ordinary_values() -> None:
    code = textwrap.dedent(
        """
        from collections import namedtuple, Counter
        from fractions import Fraction
        P = namedtuple("P", "x y")
        class Plain:
            pass
        def f(k):
            return {"t": (1, [2.0, "s"], {3}), "p": P(1, 2), "c": Counter("aab"), "q": Fraction(1, 3), "n": None}[k]
        def g():
            return (i * i for i in range(3))
        def h():
            return Plain()
        """
    )
    tests = ["from fractions import Fraction", "assert f('t') == (1, [2.0, 's'], {3})", "assert f('p') == (1, 2)",
             "assert f('c')['a'] == 2", "assert f('q') == Fraction(1, 3)", "assert f('n') is None",
             "assert list(g()) == [0, 1, 4]", "assert h() is not None"]
    out = run(code, tests)
    assert out.details["passed"] == out.details["total"] == 7, out.details


def test_hanging_test_fails_alone_and_program_hang_times_out() -> None:
    code = "def add(a, b):\n    while a < 0:\n        pass\n    return a + b\n"
    out = run(code, ADD_TESTS)
    assert out.details["passed"] == 2 and out.details["test_errors"][1] == "timeout"
    # Swallowing the per-test timeout does not help: it fires again every 0.1 s until it escapes.
    swallower = "def add(a, b):\n    while True:\n        try:\n            while True: pass\n        except BaseException: pass\n"
    quick = get_reward("code", timeout_s=4.0, per_test_timeout_s=0.3)
    out = run(swallower, ADD_TESTS, reward=quick)
    assert out.score == 0.0 and out.details["test_errors"] == ["timeout"] * 3
    # Blocking the alarm leaves only the wall-clock deadline, which kills the whole program.
    blocker = "import signal\ndef add(a, b):\n    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])\n    while True: pass\n"
    quick = get_reward("code", timeout_s=1.5, per_test_timeout_s=0.3)
    out = run(blocker, ADD_TESTS, reward=quick)
    assert out.timed_out and out.score == 0.0 and out.details["duration_s"] < 300  # it loops forever otherwise


def test_stdio_program_that_kills_its_parent_scores_zero() -> None:
    code = "import os, signal\nprint(3, flush=True)\nos.kill(os.getppid(), signal.SIGKILL)\n"
    out = run(code, [{"input": "", "output": "3"}], test_format="stdio")
    assert out.score == 0.0


def test_stdio_program_that_prints_forever_is_bounded() -> None:
    out = run("while True:\n    print('y' * 1000)\n", [{"input": "", "output": "y"}], test_format="stdio")
    assert out.score == 0.0 and not out.timed_out


def test_score_batch_parallel_keeps_order() -> None:
    codes = [GOOD_ADD, HALF_ADD, "def add(a, b): return 0", GOOD_ADD] * 2
    outs = CODE.score_batch([RewardInput(prompt="", completion=c, reference=ADD_TESTS) for c in codes])
    assert [round(o.score, 3) for o in outs] == [1.0, 0.667, 0.333, 1.0] * 2


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(RewardError):
        get_reward("code", scoring="most")
    with pytest.raises(RewardError):
        get_reward("code", use_bwrap="maybe")
