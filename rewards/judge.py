"""``judge``: LLM-as-judge answer equivalence.

The Llama-Nemotron report served Llama-3.3-70B-Instruct as a judge of whether a response's final
answer is equivalent to the reference. This reward renders a prompt from ``template`` (fields
``{question}``, ``{reference}``, ``{answer}``; literal braces as ``{{ }}``), sends a whole batch to
a backend, and parses the verdict (``parse_verdict``). The judge model runs wherever you serve it;
this package starts no model. Backends:

* ``"openai"`` (default): an OpenAI-compatible HTTP server, such as ``vllm serve <model>`` or a
  hosted API, reached through a stdlib-only client (``urllib``, ``OpenAIClient``):
  ``POST {base_url}/chat/completions`` (or ``/completions`` with ``chat=False``); ``base_url``
  defaults to ``http://127.0.0.1:8000/v1``.
* your own ``generate(prompts: list[str]) -> list[str]``: a callable passed as ``backend`` (in
  the calling process only: a callable is not plain data, so it cannot reach pool workers), or a
  dotted import path to one, which also works in pool workers: a function, used as ``generate``;
  or a class, built with ``backend_options``, whose ``generate`` method is used. An element of the
  returned list may be an exception instead of a string: that sample fails alone.

A verdict that cannot be parsed, or a backend failure, scores per ``on_error`` with ``error`` set.
"""

from __future__ import annotations

import concurrent.futures
import inspect
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, cast

from rewards.base import OnError, Reward, RewardError, RewardInput, RewardOutput, clean_input, split_think
from rlbase import PluginError, did_you_mean, import_object
from rlbase.registry import signature_options

DEFAULT_TEMPLATE = (
    "You are grading whether a student's final answer is equivalent to the reference answer.\n\n"
    "Question:\n{question}\n\n"
    "Reference answer:\n{reference}\n\n"
    "Student's final answer:\n{answer}\n\n"
    "Equivalent means the same value or meaning; ignore formatting, units written differently and "
    "the working shown. Reply with exactly one of [[YES]] or [[NO]]."
)
_BRACKET_RE = re.compile(r"\[\[\s*(YES|NO)\s*\]\]", re.IGNORECASE)
_WORD_RE = re.compile(
    r"\b(not\s+equivalent|not\s+correct|incorrect|inequivalent|equivalent|correct|yes|no|true|false)\b",
    re.IGNORECASE,
)
_POSITIVE = {"equivalent", "correct", "yes", "true"}

Generate = Callable[[list[str]], Sequence[Any]]
JUDGE_OPTIONS = ["backend", "template", "backend_options", "max_answer_chars", "on_error"]


def parse_verdict(text: str) -> bool | None:
    """Judge output -> True (equivalent), False (not), None (unparseable).

    ``[[YES]]``/``[[NO]]`` wins; otherwise the last verdict word (negations such as
    "not equivalent" and "incorrect" are matched as a whole). Reasoning in ``<think>`` is ignored.
    """
    if not isinstance(text, str):
        return None
    _, final = split_think(text)
    brackets: list[str] = _BRACKET_RE.findall(final)
    if brackets:
        return brackets[-1].upper() == "YES"
    words: list[str] = _WORD_RE.findall(final[-2000:])
    if not words:
        return None
    return re.sub(r"\s+", " ", words[-1].lower()) in _POSITIVE


class OpenAIClient:
    """Minimal OpenAI-compatible client (``/chat/completions`` or ``/completions``), stdlib only.

    Args:
        base_url: Server root including ``/v1``; loopback by default.
        model: Model name the server expects.
        api_key_env: Name of an environment variable holding the API key (keys never sit in configs).
        chat: Use ``/chat/completions`` (True) or ``/completions``.
        max_tokens, temperature: Sampling options (greedy by default: a judge should be deterministic).
        timeout_s: Per-request timeout. retries: Extra attempts on connection errors and 5xx/429.
        max_concurrency: Requests in flight at once for a batch.
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000/v1",
        model: str = "judge",
        *,
        api_key_env: str | None = None,
        chat: bool = True,
        max_tokens: int = 512,
        temperature: float = 0.0,
        timeout_s: float = 60.0,
        retries: int = 2,
        max_concurrency: int = 8,
        system_prompt: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model, self.chat, self.system_prompt = model, chat, system_prompt
        self.api_key = os.environ.get(api_key_env) if api_key_env else None
        self.max_tokens, self.temperature = max_tokens, temperature
        self.timeout_s, self.retries, self.max_concurrency = timeout_s, retries, max(1, max_concurrency)

    def generate(self, prompts: list[str]) -> list[str | Exception]:
        """One completion per prompt, in order; a failed request yields its exception in place."""
        if len(prompts) <= 1:
            return [self._safe_complete(p) for p in prompts]
        with concurrent.futures.ThreadPoolExecutor(min(self.max_concurrency, len(prompts))) as ex:
            return list(ex.map(self._safe_complete, prompts))

    def _safe_complete(self, prompt: str) -> str | Exception:
        try:
            return self.complete(prompt)
        except Exception as exc:  # noqa: BLE001 - reported per sample
            return exc

    def complete(self, prompt: str) -> str:
        """One request, retried with back-off on transient failures."""
        body = self._body(prompt)
        for attempt in range(self.retries + 1):
            try:
                return self._extract(self._post(body))
            except urllib.error.HTTPError as exc:
                if (exc.code < 500 and exc.code != 429) or attempt == self.retries:
                    raise
            except (urllib.error.URLError, TimeoutError, ConnectionError):
                if attempt == self.retries:
                    raise
            time.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    def _body(self, prompt: str) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "max_tokens": self.max_tokens, "temperature": self.temperature}
        if not self.chat:
            return {**body, "prompt": prompt}
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return {**body, "messages": messages + [{"role": "user", "content": prompt}]}

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/{'chat/completions' if self.chat else 'completions'}"
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            payload = json.loads(response.read(4 << 20))
        if not isinstance(payload, dict):
            raise TypeError(f"judge server sent {type(payload).__name__} JSON, expected an object")
        return payload

    def _extract(self, payload: dict[str, Any]) -> str:
        choice = payload["choices"][0]
        text = choice["message"]["content"] if self.chat else choice["text"]
        if not isinstance(text, str):
            raise TypeError(f"judge server sent no text in its first choice: {str(choice)[:200]}")
        return text


def make_backend(backend: str | Generate | Any, backend_options: dict[str, Any], client_options: dict[str, Any]) -> Generate:
    """Resolve the ``backend`` option to a ``generate(prompts)`` callable.

    Raises:
        RewardError: An unknown client option, client options given to a backend other than
            "openai", an import path that does not import, or a backend that is not callable.
    """
    if backend == "openai":
        allowed = signature_options(OpenAIClient) or []
        for key in client_options:
            if key not in allowed:
                raise RewardError(f"judge takes no option {key!r}.{did_you_mean(key, allowed + JUDGE_OPTIONS)} Valid "
                                  f"options: {', '.join(sorted(JUDGE_OPTIONS))}, and for backend='openai': "
                                  f"{', '.join(sorted(allowed))}")
        return OpenAIClient(**client_options).generate
    if client_options:
        raise RewardError(f"judge options {sorted(client_options)} configure the OpenAI-compatible client, but "
                          f"backend is {backend!r}; pass a backend class's options as backend_options")
    if isinstance(backend, str):
        try:
            backend = import_object(backend)
        except PluginError as exc:
            raise RewardError(f"judge backend: {exc}") from exc
        if inspect.isclass(backend):
            backend, backend_options = backend(**backend_options), {}
    if backend_options:
        raise RewardError("judge backend_options apply only to a backend class named by an import path, "
                          f"not to {backend!r}")
    generate = getattr(backend, "generate", backend)
    if not callable(generate):
        raise RewardError(f"judge backend {backend!r} is not callable and has no generate()")
    return cast(Generate, generate)  # a user object: its signature is the user's promise


class JudgeReward(Reward):
    """LLM-as-judge equivalence of the final answer with the reference.

    Args:
        backend: "openai", a ``generate(prompts) -> list[str]`` callable, or a dotted import path
            to such a function or to a class with a ``generate`` method.
        template: Prompt template with ``{question}``, ``{reference}``, ``{answer}``.
        base_url, model, api_key_env, chat, max_tokens, temperature, timeout_s, retries,
            max_concurrency, system_prompt: Options of the OpenAI-compatible client.
            Only with ``backend="openai"``.
        backend_options: Keyword arguments of a backend class named by dotted path.
        max_answer_chars: The answer sent to the judge is cut to its last this many characters.
        on_error: Policy for backend failures and unparseable verdicts.
    """

    name = "judge"

    def __init__(
        self,
        *,
        backend: str | Generate | Any = "openai",
        template: str = DEFAULT_TEMPLATE,
        backend_options: dict[str, Any] | None = None,
        max_answer_chars: int = 4000,
        on_error: OnError = "zero",
        **client_options: Any,
    ) -> None:
        super().__init__(on_error=on_error)
        try:
            template.format(question="", reference="", answer="")
        except (KeyError, IndexError, ValueError) as exc:
            raise RewardError(f"judge template must only use {{question}}, {{reference}}, {{answer}}: {exc!r}") from exc
        self.template = template
        self.max_answer_chars = max_answer_chars
        try:
            self.generate = make_backend(backend, backend_options or {}, client_options)
        except TypeError as exc:
            raise RewardError(f"bad judge options: {exc}") from exc

    def render(self, inp: RewardInput) -> str:
        """The judge prompt of one sample (the answer is what follows ``</think>``)."""
        _, answer = split_think(inp.completion)
        answer = answer.strip()[-self.max_answer_chars :]
        reference = inp.reference if isinstance(inp.reference, str) else json.dumps(inp.reference, default=str)
        return self.template.format(question=inp.prompt, reference=reference, answer=answer)

    def _score(self, inp: RewardInput) -> RewardOutput:
        return self._score_many([inp])[0]

    def score_batch(self, inps: Sequence[RewardInput]) -> list[RewardOutput]:
        """All prompts of the batch go to the backend in one call."""
        try:
            return self._score_many([clean_input(i) for i in inps])
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - a dead backend fails the batch, not the run
            return [self.failure(exc) for _ in inps]

    def _score_many(self, inps: list[RewardInput]) -> list[RewardOutput]:
        raw = list(self.generate([self.render(i) for i in inps]))
        if len(raw) != len(inps):
            raise RewardError(f"judge backend returned {len(raw)} outputs for {len(inps)} prompts")
        return [self._verdict(text) for text in raw]

    def _verdict(self, text: Any) -> RewardOutput:
        if isinstance(text, BaseException):
            return self.failure(text)
        verdict = parse_verdict(text)
        details = {"verdict": verdict, "raw": str(text)[-300:]}
        if verdict is None:
            out = self.failure(ValueError("unparseable judge verdict"))
            return RewardOutput(out.score, False, False, out.error, details)
        return RewardOutput(score=float(verdict), correct=verdict, details=details)
