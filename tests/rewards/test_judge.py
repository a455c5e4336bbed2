"""The ``judge`` verifier: verdict parsing, the stdlib OpenAI-compatible client, pluggable backends,
and an end-to-end run against a tiny Llama served over HTTP on 127.0.0.1 inside the test."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from rewards import RewardError, RewardInput, RewardPool, get_reward
from rewards.judge import DEFAULT_TEMPLATE, JudgeReward, OpenAIClient, parse_verdict


@pytest.mark.parametrize(
    "text, verdict",
    [
        ("[[YES]]", True),
        ("[[NO]]", False),
        ("reasoning... [[ yes ]]", True),
        ("At first [[NO]] but on reflection [[YES]]", True),
        ("<think>[[NO]]</think>[[YES]]", True),
        ("<think>[[YES]]</think>The answers are not equivalent.", False),
        ("Yes, they are equivalent.", True),
        ("No. The student's answer is not equivalent.", False),
        ("The answer is incorrect", False),
        ("The answer is correct", True),
        ("Verdict: False", False),
        ("TRUE", True),
        ("I cannot tell", None),
        ("", None),
        ("yesterday nothing", None),
        (None, None),
    ],
)
def test_parse_verdict(text: Any, verdict: bool | None) -> None:
    assert parse_verdict(text) is verdict


# --- a stub OpenAI-compatible server --------------------------------------------------------------


class StubServer:
    """OpenAI-compatible server on 127.0.0.1 whose reply is computed by ``respond(body) -> (status, text)``."""

    def __init__(self, respond: Callable[[dict], tuple[int, str]]) -> None:
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the name http.server dispatches to
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append({"path": self.path, **body})
                stub.headers.append(dict(self.headers))
                status, text = respond(body)
                key = "message" if self.path.endswith("chat/completions") else "text"
                choice = {"message": {"role": "assistant", "content": text}} if key == "message" else {"text": text}
                payload = json.dumps({"choices": [choice]}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[Callable[[Callable[[dict], tuple[int, str]]], StubServer]]:
    servers: list[StubServer] = []

    def make(respond: Callable[[dict], tuple[int, str]]) -> StubServer:
        servers.append(StubServer(respond))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def keyword_respond(body: dict) -> tuple[int, str]:
    content = body["messages"][-1]["content"] if "messages" in body else body["prompt"]
    return 200, "[[YES]]" if "42" in content.rsplit("final answer:", 1)[-1] else "Verdict: [[NO]]"


def sample(answer: str, reference: object = "42") -> RewardInput:
    return RewardInput(prompt="What is 6*7?", completion=f"<think>hmm 41?</think>{answer}", reference=reference)


def test_http_judge_scores_and_sends_the_right_prompt(stub: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    server = stub(keyword_respond)
    monkeypatch.setenv("JUDGE_KEY_FOR_TEST", "sekrit")
    judge = get_reward("judge", base_url=server.url, model="llama-judge", api_key_env="JUDGE_KEY_FOR_TEST")
    outs = judge.score_batch([sample("It is 42."), sample("It is 41.")])
    assert [(o.score, o.correct) for o in outs] == [(1.0, True), (0.0, False)]
    assert outs[0].details["verdict"] is True
    req = server.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["model"] == "llama-judge" and req["temperature"] == 0.0
    prompt = req["messages"][-1]["content"]
    assert "What is 6*7?" in prompt and "Reference answer:\n42" in prompt
    assert "hmm 41?" not in prompt  # the reasoning is not shown to the judge
    assert server.headers[0]["Authorization"] == "Bearer sekrit"


def test_completions_endpoint_and_custom_template(stub: Callable) -> None:
    server = stub(keyword_respond)
    template = "Q: {question}\nGold: {reference}\nfinal answer: {answer}\nVerdict in [[YES]]/[[NO]]:"
    judge = get_reward("judge", base_url=server.url, chat=False, template=template)
    assert judge.score(sample("42")).correct
    assert server.requests[0]["path"] == "/v1/completions" and server.requests[0]["prompt"].startswith("Q: What")


def test_retries_on_server_errors_then_succeeds(stub: Callable) -> None:
    calls = {"n": 0}

    def flaky(body: dict) -> tuple[int, str]:
        calls["n"] += 1
        return (500, "boom") if calls["n"] == 1 else keyword_respond(body)

    server = stub(flaky)
    out = get_reward("judge", base_url=server.url, retries=2).score(sample("42"))
    assert out.correct and calls["n"] == 2


def test_client_errors_and_unparseable_verdicts_are_recorded(stub: Callable) -> None:
    bad = stub(lambda body: (400, "bad request"))
    out = get_reward("judge", base_url=bad.url, retries=3).score(sample("42"))
    assert out.score == 0.0 and "HTTPError" in (out.error or "") and len(bad.requests) == 1  # 4xx: no retry
    vague = stub(lambda body: (200, "hmm, hard to say"))
    out = get_reward("judge", base_url=vague.url, on_error=-0.5).score(sample("42"))
    assert out.score == -0.5 and "unparseable" in (out.error or "") and out.details["raw"] == "hmm, hard to say"


def test_reply_without_text_is_an_error(stub: Callable) -> None:
    server = stub(lambda body: (200, None))  # e.g. a tool-call reply: "content": null
    out = get_reward("judge", base_url=server.url).score(sample("42"))
    assert out.score == 0.0 and not out.correct and "no text" in (out.error or "")


def test_unreachable_server_is_an_error_not_a_crash() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    out = get_reward("judge", base_url=f"http://127.0.0.1:{port}/v1", retries=0, timeout_s=2).score(sample("42"))
    assert out.score == 0.0 and out.error


def test_callable_backend_gets_the_whole_batch() -> None:
    calls: list[list[str]] = []

    def generate(prompts: list[str]) -> list[str]:
        calls.append(prompts)
        return ["[[YES]]" if "42" in p.rsplit("final answer:", 1)[-1] else "[[NO]]" for p in prompts]

    judge = get_reward("judge", backend=generate)
    outs = judge.score_batch([sample("42"), sample("7"), sample("42")])
    assert [o.correct for o in outs] == [True, False, True]
    assert len(calls) == 1 and len(calls[0]) == 3


@pytest.mark.parametrize(
    "generate, message",
    [
        (lambda prompts: 1 / 0, "ZeroDivisionError"),
        (lambda prompts: ["[[YES]]"], "returned 1 outputs for 2 prompts"),
        (lambda prompts: [ValueError("engine down"), "[[YES]]"], None),
    ],
)
def test_failing_callable_backends(generate: Callable, message: str | None) -> None:
    outs = get_reward("judge", backend=generate).score_batch([sample("42"), sample("42")])
    if message:
        assert all(o.score == 0.0 and message in (o.error or "") for o in outs)
    else:
        assert outs[0].error and "engine down" in outs[0].error and outs[1].correct


def test_dotted_path_backend_class_with_options() -> None:
    judge = get_reward("judge", backend="helper_rewards.KeywordJudge", backend_options={"keyword": "7"})
    assert [o.correct for o in judge.score_batch([sample("7"), sample("42")])] == [True, False]


def test_bad_judge_options() -> None:
    with pytest.raises(RewardError):
        get_reward("judge", template="{question} {nope}")
    with pytest.raises(RewardError):
        get_reward("judge", no_such_client_option=1)


def test_judge_in_pool_over_http(stub: Callable) -> None:
    server = stub(keyword_respond)
    config = {"components": {"judge": 1.0}, "options": {"judge": {"base_url": server.url}}}
    with RewardPool(config, num_workers=2, timeout_s=10.0) as pool:
        outs = pool.score_batch([sample("42"), sample("1"), sample("42"), sample("2")])
    assert [o.correct for o in outs] == [True, False, True, False]


# --- a tiny Llama judge served over HTTP ---------------------------------------------------------


TINY_TEMPLATE = "Q: {question}\nReference: {reference}\nAnswer: {answer}\nSame? "


def build_tiny_judge() -> tuple[Any, Any]:
    """A tiny randomly initialised Llama with a char-level tokenizer, trained for about a second to
    answer [[YES]] when the student's answer is 4 and [[NO]] when it is 5 (nothing is downloaded)."""
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    vocab = {tok: i for i, tok in enumerate(specials + [chr(c) for c in range(32, 127)] + ["\n"])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                  pad_token="<pad>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=1, eos_token_id=2, pad_token_id=3)
    model = LlamaForCausalLM(config)
    judge = get_reward("judge", backend=lambda prompts: [], template=TINY_TEMPLATE)
    assert isinstance(judge, JudgeReward)
    render = judge.render
    rows = []
    for answer, verdict in (("4", "[[YES]]"), ("5", "[[NO]]")):
        prompt = tok(render(RewardInput(prompt="2+2?", completion=answer, reference="4")))["input_ids"]
        rows.append((prompt, tok(verdict)["input_ids"] + [tok.eos_token_id]))
    width = max(len(p) + len(t) for p, t in rows)
    ids = torch.full((2, width), tok.pad_token_id)
    labels = torch.full((2, width), -100)
    mask = torch.zeros((2, width), dtype=torch.long)
    for i, (p, t) in enumerate(rows):
        ids[i, : len(p) + len(t)] = torch.tensor(p + t)
        labels[i, len(p) : len(p) + len(t)] = torch.tensor(t)
        mask[i, : len(p) + len(t)] = 1
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(800):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.01:
            break
    model.eval()
    return model, tok


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny models run far faster on one thread than fighting for two busy cores."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_tiny_llama_judge_over_http(stub: Callable, one_torch_thread: None) -> None:
    import torch

    model, tok = build_tiny_judge()

    def generate(body: dict) -> tuple[int, str]:
        ids = torch.tensor([tok(body["messages"][-1]["content"])["input_ids"]])
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=min(body["max_tokens"], 12),
                                 do_sample=False, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        return 200, tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)

    server = stub(generate)
    judge = get_reward("judge", base_url=server.url, model="tiny-llama", max_tokens=12, template=TINY_TEMPLATE)
    inputs = [RewardInput(prompt="2+2?", completion=f"<think>maybe 5</think>{a}", reference="4") for a in "45"]
    outs = judge.score_batch(inputs)
    raws = [o.details["raw"] for o in outs]
    assert raws == ["[[YES]]", "[[NO]]"], raws  # what the model generated, parsed by the reward
    assert [(o.score, o.correct) for o in outs] == [(1.0, True), (0.0, False)]
    assert len(server.requests) == 2 and all(r["model"] == "tiny-llama" for r in server.requests)


def test_default_template_fields() -> None:
    rendered = DEFAULT_TEMPLATE.format(question="Q?", reference="R", answer="A")
    assert "Q?" in rendered and "R" in rendered and "A" in rendered and "[[YES]]" in rendered
    assert OpenAIClient().base_url.startswith("http://127.0.0.1")
