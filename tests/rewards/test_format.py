"""The ``format`` verifier: reasoning toggle on/off, mode detection, malformed think blocks."""

from __future__ import annotations

import pytest

from rewards import RewardError, RewardInput, get_reward
from rewards.format import thinking_mode

FORMAT = get_reward("format")
ON = "<think>\nLet me work it out: 2+2=4.\n</think>\n\nThe answer is 4."
OFF = "The answer is 4."


def score(completion: str, prompt: str = "", **metadata: object) -> float:
    return FORMAT.score(RewardInput(prompt=prompt, completion=completion, metadata=dict(metadata))).score


@pytest.mark.parametrize(
    "completion, expected",
    [
        (ON, 1.0),
        ("  <think></think>answer", 1.0),
        (OFF, 0.0),  # no think block although thinking is on
        ("<think>a</think>", 0.0),  # nothing after the block
        ("<think>a</think>   \n", 0.0),
        ("<think>a</think> b <think>c</think> d", 0.0),  # two blocks
        ("<think>a <think>b</think> c</think> d", 0.0),  # nested
        ("intro <think>a</think> b", 0.0),  # text before the block
        ("</think>a<think> b", 0.0),  # reversed tags
        ("<think>never closed, truncated", 0.0),
        ("<think>a</think> answer </think>", 0.0),
    ],
)
def test_thinking_on(completion: str, expected: float) -> None:
    assert score(completion, thinking="on") == expected


@pytest.mark.parametrize(
    "completion, expected",
    [(OFF, 1.0), (ON, 0.0), ("<think></think>4", 0.0), ("The tag </think> appears", 0.0), ("", 0.0), ("  \n", 0.0)],
)
def test_thinking_off(completion: str, expected: float) -> None:
    assert score(completion, thinking="off") == expected


@pytest.mark.parametrize(
    "prompt, metadata, mode",
    [
        ("", {"thinking": "on"}, "on"),
        ("", {"thinking": "OFF"}, "off"),
        ("", {"thinking": True}, "on"),
        ("", {"thinking": False}, "off"),
        ("", {"system": "detailed thinking on"}, "on"),
        ("", {"system": "You are helpful. Detailed thinking off."}, "off"),
        ("<|system|>detailed thinking off<|user|>say 'detailed thinking on'", {}, "off"),  # first wins
        ("<|system|>detailed thinking on<|user|>hi", {}, "on"),
        ("metadata beats the prompt: detailed thinking on", {"thinking": "off"}, "off"),
        ("no toggle here", {}, None),
        ("", {"thinking": "maybe"}, None),
    ],
)
def test_mode_detection(prompt: str, metadata: dict, mode: str | None) -> None:
    assert thinking_mode(RewardInput(prompt=prompt, completion="", metadata=metadata)) == mode


def test_mode_from_system_prompt_drives_the_score() -> None:
    assert score(ON, prompt="<s>detailed thinking on</s> What is 2+2?") == 1.0
    assert score(ON, prompt="<s>detailed thinking off</s> What is 2+2?") == 0.0
    assert score(OFF, prompt="<s>detailed thinking off</s> What is 2+2?") == 1.0


def test_default_mode_when_unknown() -> None:
    assert score(ON) == 1.0 and score(OFF) == 1.0  # "any"
    assert score("<think>x") == 0.0
    strict_on = get_reward("format", default_mode="on")
    assert strict_on.score(RewardInput(prompt="", completion=OFF)).score == 0.0
    with pytest.raises(RewardError):
        get_reward("format", default_mode="sometimes")


def test_details_explain_the_verdict() -> None:
    out = FORMAT.score(RewardInput(prompt="", completion=OFF, metadata={"thinking": "on"}))
    assert out.details["mode"] == "on" and "<think>" in out.details["reason"]


@pytest.mark.parametrize("completion", ["\x00<think>\x00</think>\x00a", "<think>" * 100_000, "\udcff" * 10, "x" * 1_000_000])
def test_hostile_completions(completion: str) -> None:
    out = FORMAT.score(RewardInput(prompt="", completion=completion, metadata={"thinking": "on"}))
    assert out.error is None and out.score in (0.0, 1.0)
