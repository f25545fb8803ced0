"""The openai backend against real servers on 127.0.0.1, never a mocked HTTP layer.

- llm-katan (PyPI) serves the quickstart SmolLM2 directory on /v1/chat/completions only. It ignores ``n``,
  ``seed``, ``top_p`` and ``stop``, and always answers ``finish_reason="stop"``.
- ``transformers serve`` (part of transformers) serves the same directory on /v1/completions too. It ignores
  ``n``, honours ``seed`` (one global generator), ``top_p`` and ``stop`` (keeping the stop string in the text) and
  rejects fields it does not know (HTTP 422).
- A stdlib loopback HTTP server (:class:`tests.servers.FlakyServer`) answers scripted errors (429, 503, a hang)
  and forwards the rest to llm-katan.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from divtrace.errors import DivtraceError
from divtrace.generate.backends import create_generator
from divtrace.generate.backends.openai_compat import OpenAIGenerator, OpenAIServerError, readable_chat
from divtrace.generate.backends.options import OpenAIOptions
from divtrace.generate.params import SamplingParams, UnsupportedSamplingError, sample_seed
from divtrace.generate.protocol import Completion, GenerationRequest
from divtrace.generate.thinking import EMPTY_THINKING_BLOCK, ThinkingMode
from divtrace.progress import ProgressEvent
from divtrace.samples import read_samples
from tests.servers import MODEL, SERVED, FlakyServer, ServerProcess, free_port

PROMPTS = ["Write one line about the sea.", "Invent a name for a cat.", "Describe a cloud."]
#: Sampling that gives distinct short samples from a 135M model and keeps each request under a second on CPU.
PARAMS = SamplingParams(k=4, temperature=1.0, top_p=0.95, max_new_tokens=16, seed=7)


# ----- real servers (tests/servers.py; started once per session by tests/conftest.py) -----


@pytest.fixture(scope="module")
def model_dir(served_model_dir: str) -> str:
    return served_model_dir


@pytest.fixture(scope="module")
def launched(katan_process: ServerProcess | None, tserve_process: ServerProcess | None) -> None:
    """Both servers, launched at once so they load in parallel; each fixture below waits for its own."""


@pytest.fixture(scope="module")
def katan(launched: None, katan: ServerProcess) -> ServerProcess:
    return katan


@pytest.fixture(scope="module")
def tserve(launched: None, tserve: ServerProcess) -> ServerProcess:
    return tserve


# ----- helpers -----


def requests_for(generator: OpenAIGenerator, params: SamplingParams, prompts: list[str]) -> list[GenerationRequest]:
    """Requests as the runner builds them: rendered by the generator, one seed per sample."""
    out = []
    for i, prompt in enumerate(prompts):
        rendered, messages = generator.render(prompt, system_prompt=None, chat_template=None, thinking="native")
        prompt_id = f"q{i}"
        out.append(
            GenerationRequest(
                prompt_id=prompt_id,
                prompt=prompt,
                rendered=rendered,
                seeds=tuple(sample_seed(params.seed, prompt_id, k) for k in range(params.k)),
                messages=messages,
            )
        )
    return out


def assert_one_per_seed(requests: list[GenerationRequest], results: list[list[Completion]], k: int) -> None:
    assert len(results) == len(requests)
    for request, completions in zip(requests, results, strict=True):
        assert len(completions) == k
        assert [c.seed for c in completions] == list(request.seeds)  # separate requests: each its own seed
        assert all(c.finish_reason in ("stop", "length") for c in completions)
        texts = [c.text for c in completions]
        assert len(set(texts)) == k, texts  # K distinct samples


def samples_reported(events: list[ProgressEvent], max_new_tokens: int) -> int:
    """The samples a generate call's progress reported: its events count tokens of the budget (max_new_tokens per
    sample), never decreasing, ending at the call's whole budget."""
    assert events and all(event.count == "tokens" for event in events)
    dones = [event.done for event in events]
    assert dones == sorted(dones) and events[-1].done == events[-1].total
    return events[-1].done // max_new_tokens


# ----- completions endpoint (transformers serve) -----


@pytest.mark.slow
def test_completions_endpoint_draws_k_distinct_samples(tserve: ServerProcess, model_dir: str) -> None:
    generator = OpenAIGenerator(
        model_dir,
        OpenAIOptions(base_url=tserve.base_url, endpoint="completions", tokenizer=MODEL, max_retries=2, n_mode="auto"),
    )
    rendered, messages = generator.render("Name a fruit.", chat_template=None)
    assert rendered.endswith("<|im_start|>assistant\n")  # the tokenizer's chat template, rendered locally
    assert messages is not None and messages[-1] == {"role": "user", "content": "Name a fruit."}

    effective = generator.check(PARAMS)
    assert effective["n_handling"] == "separate"  # transformers serve ignores n: the probe saw one choice
    assert generator.n_support() == (False, "probe: server ignored n (1 choice for n=2)")
    assert effective["endpoint"] == "completions" and effective["tokenizer"] == MODEL

    requests = requests_for(generator, PARAMS, PROMPTS[:2])
    events: list[ProgressEvent] = []
    results = generator.generate(requests, PARAMS, events.append)
    assert_one_per_seed(requests, results, PARAMS.k)
    assert samples_reported(events, PARAMS.max_new_tokens) == 2 * PARAMS.k
    for completion in (c for per in results for c in per):
        # transformers serve reports honest finish reasons and a per-request token count
        assert completion.output_tokens is not None and 1 <= completion.output_tokens <= PARAMS.max_new_tokens
        assert (completion.finish_reason == "length") == (completion.output_tokens == PARAMS.max_new_tokens)
    generator.close()
    with pytest.raises(DivtraceError, match="closed"):
        generator.generate(requests, PARAMS)


@pytest.mark.slow
def test_completions_seeds_reach_the_server_and_stop_strings_are_cut(tserve: ServerProcess, model_dir: str) -> None:
    # max_concurrency=1: transformers serve seeds one global generator, so only serial requests are reproducible
    generator = OpenAIGenerator(model_dir, OpenAIOptions(base_url=tserve.base_url, max_concurrency=1, max_retries=2))
    params = PARAMS.model_copy(update={"k": 3, "stop": ("e",)})
    requests = requests_for(generator, params, ["Once upon a time"])
    assert requests[0].rendered == "Once upon a time" and requests[0].messages is None  # no tokenizer: plain text
    first = generator.generate(requests, params)
    again = generator.generate(requests, params)
    assert [c.text for c in first[0]] == [c.text for c in again[0]]  # same seeds, same samples
    assert all("e" not in c.text and c.finish_reason in ("stop", "length") for c in first[0])
    # transformers serve keeps the stop string in the text: cut here, finish "stop", token count unknown
    assert any(c.finish_reason == "stop" and c.output_tokens is None for c in first[0])


@pytest.mark.slow
def test_strict_server_refuses_vllm_only_fields(tserve: ServerProcess, model_dir: str) -> None:
    # extra_sampling_params sends top_k in extra_body: transformers serve answers 422 instead of ignoring it
    generator = OpenAIGenerator(
        model_dir, OpenAIOptions(base_url=tserve.base_url, extra_sampling_params=True, max_retries=2, n_mode="auto")
    )  # auto: check() probes n with one request, which carries top_k
    with pytest.raises(OpenAIServerError, match=r"HTTP 422.*top_k") as caught:
        generator.check(PARAMS.model_copy(update={"top_k": 20}))
    assert caught.value.attempts == 1  # a 4xx is never retried
    # suppressed thinking on the chat endpoint needs continue_final_message, which this server rejects
    chat = OpenAIGenerator(
        model_dir, OpenAIOptions(base_url=tserve.base_url, endpoint="chat", n_mode="separate", max_retries=2)
    )
    rendered, messages = chat.render("Name a fruit.", thinking=ThinkingMode.suppressed)
    request = GenerationRequest("q0", "Name a fruit.", rendered, (1,), messages)
    with pytest.raises(OpenAIServerError, match="continue_final_message"):
        chat.generate([request], PARAMS)


# ----- chat endpoint (llm-katan) -----


@pytest.mark.slow
def test_chat_endpoint_draws_k_distinct_samples_and_records_effective_params(katan: ServerProcess) -> None:
    generator = create_generator("openai", SERVED, {"base_url": katan.base_url, "endpoint": "chat", "max_retries": 2})
    assert isinstance(generator, OpenAIGenerator)
    params = PARAMS.model_copy(update={"stop": ("\n\n",)})
    effective = generator.check(params)
    assert effective == {
        "temperature": 1.0,
        "top_p": 0.95,
        "top_k": None,
        "max_new_tokens": 16,
        "stop": ["\n\n"],
        "seed": 7,
        "k": 4,
        "backend": "openai",
        "openai_version": openai.__version__,
        "base_url": katan.base_url,
        "served_model": SERVED,
        "endpoint": "chat",
        "tokenizer": None,
        "n_handling": "separate",
        "seeding": "one request per sample, seeded with the sample's own seed; "
        "whether the server honours the request seed is up to the server",
        "extra_body": {},
        "server_model": {"owned_by": "llm-katan"},
    }
    # /v1/models metadata without its per-call "created" time: the reference is stable across calls
    assert generator.model_ref() == {"id": SERVED, "base_url": katan.base_url, "owned_by": "llm-katan"}
    assert generator.check(params) == effective

    requests = requests_for(generator, params, PROMPTS[:2])
    assert requests[0].messages == ({"role": "user", "content": "Write one line about the sea."},)
    assert requests[0].rendered == "<|user|>\nWrite one line about the sea.\n<|assistant|>\n"
    events: list[ProgressEvent] = []
    results = generator.generate(requests, params, events.append)
    assert_one_per_seed(requests, results, params.k)
    assert samples_reported(events, params.max_new_tokens) == 2 * params.k
    for completion in (c for per in results for c in per):
        # llm-katan ignores stop: the text is cut here, and the server's token count no longer applies
        assert "\n\n" not in completion.text
        assert completion.output_tokens is not None or completion.finish_reason == "stop"


@pytest.mark.slow
def test_server_ignoring_n_is_detected_during_generation(katan: ServerProcess) -> None:
    # no check() first: the first n=3 request comes back with one choice, then every sample is its own request
    with FlakyServer([], upstream=katan.base_url) as counting:
        generator = OpenAIGenerator(
            SERVED, OpenAIOptions(base_url=counting.base_url, endpoint="chat", max_concurrency=4, n_mode="auto")
        )
        params = PARAMS.model_copy(update={"k": 3, "max_new_tokens": 8})
        requests = requests_for(generator, params, PROMPTS)
        events: list[ProgressEvent] = []
        results = generator.generate(requests, params, events.append)
        assert generator.check(params)["n_handling"] == "separate"  # remembered: no new probe
    assert generator.n_support() == (False, "server ignored n: 1 choice(s) for n=3")
    assert_one_per_seed(requests, results, 3)
    assert samples_reported(events, params.max_new_tokens) == 9
    # one n=3 request (its single answer discarded), then 3 x 3 single requests; no probe, no other n=3 request
    assert counting.posts == [200] * 10


@pytest.mark.slow
def test_native_n_mode_refuses_a_server_that_ignores_n(katan: ServerProcess) -> None:
    generator = OpenAIGenerator(SERVED, OpenAIOptions(base_url=katan.base_url, endpoint="chat", n_mode="native"))
    with pytest.raises(UnsupportedSamplingError, match="ignores n"):
        generator.check(PARAMS)
    requests = requests_for(generator, PARAMS, PROMPTS[:1])
    with pytest.raises(UnsupportedSamplingError, match="ignores n"):
        generator.generate(requests, PARAMS)


@pytest.mark.slow
def test_retries_429_then_503_then_succeeds(katan: ServerProcess) -> None:
    with FlakyServer([429, 503], upstream=katan.base_url) as flaky:
        generator = OpenAIGenerator(
            SERVED,
            OpenAIOptions(
                base_url=flaky.base_url, endpoint="chat", n_mode="separate", max_concurrency=1, max_retries=3
            ),
        )
        params = PARAMS.model_copy(update={"k": 2, "max_new_tokens": 8})
        requests = requests_for(generator, params, PROMPTS[:1])
        started = time.monotonic()
        results = generator.generate(requests, params)
        elapsed = time.monotonic() - started
    assert flaky.posts == [429, 503, 200, 200]  # the first sample was sent three times, the second once
    assert [len(per) for per in results] == [2]
    assert elapsed >= 0.3 * (1 + 2)  # exponential backoff: ~0.5 s then ~1 s, minus up to 25% jitter


@pytest.mark.slow
def test_generate_from_a_thread_and_from_a_running_event_loop(katan: ServerProcess) -> None:
    generator = OpenAIGenerator(SERVED, OpenAIOptions(base_url=katan.base_url, endpoint="chat", n_mode="separate"))
    params = PARAMS.model_copy(update={"k": 1, "max_new_tokens": 4})
    requests = requests_for(generator, params, PROMPTS[:1])
    from_thread: list[list[list[Completion]]] = []
    worker = threading.Thread(target=lambda: from_thread.append(generator.generate(requests, params)))
    worker.start()
    worker.join(timeout=120)

    async def caller() -> list[list[Completion]]:
        return generator.generate(requests, params)  # a synchronous call inside a running loop

    from_loop = asyncio.run(caller())
    assert [len(per) for per in from_thread[0]] == [1]
    assert [len(per) for per in from_loop] == [1]


# ----- failures that must end, with a clear error -----


def test_server_that_keeps_failing_raises_after_the_retry_budget() -> None:
    with FlakyServer([], default=503) as failing:
        generator = OpenAIGenerator("m", OpenAIOptions(base_url=failing.base_url, n_mode="separate", max_retries=2))
        params = PARAMS.model_copy(update={"k": 1})
        requests = [GenerationRequest("q0", "Hi", "Hi", (1,))]
        with pytest.raises(OpenAIServerError, match=r"HTTP 503 on /completions after 3 attempt\(s\)") as caught:
            generator.generate(requests, params)
    assert isinstance(caught.value, DivtraceError)
    assert (caught.value.status_code, caught.value.attempts) == (503, 3)
    assert failing.posts == [503, 503, 503]


def test_unreachable_server_and_request_timeout_raise_clear_errors() -> None:
    params = PARAMS.model_copy(update={"k": 1})
    requests = [GenerationRequest("q0", "Hi", "Hi", (1,))]
    closed = OpenAIGenerator("m", OpenAIOptions(base_url=f"http://127.0.0.1:{free_port()}", max_retries=1))
    assert closed.base_url.endswith("/v1")
    with pytest.raises(OpenAIServerError, match="cannot reach the OpenAI-compatible server") as caught:
        closed.generate(requests, params)
    assert caught.value.status_code is None
    with pytest.raises(OpenAIServerError, match="cannot reach"):
        closed.model_ref()

    with FlakyServer([], default="hang", hang_s=3.0) as hanging:
        slow = OpenAIGenerator("m", OpenAIOptions(base_url=hanging.base_url, timeout=0.3, max_retries=1))
        with pytest.raises(OpenAIServerError, match=r"timed out \(0.3 s\) on each of 2 attempt"):
            slow.generate(requests, params)  # the client's 0.3 s timeout fired, twice, before the server's 3 s hang
    assert hanging.posts == [0, 0]


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"top_k": 20}, "top_k=20 has"),
        ({"min_p": 0.1}, "min_p=0.1 has"),
        ({"top_k": 20, "min_p": 0.1}, "top_k=20 and min_p=0.1 have"),
    ],
)
def test_top_k_and_min_p_are_refused_without_extra_sampling_params(settings: dict[str, Any], named: str) -> None:
    generator = OpenAIGenerator("m", OpenAIOptions(base_url=f"http://127.0.0.1:{free_port()}/v1"))
    params = SamplingParams(**settings)
    with pytest.raises(UnsupportedSamplingError, match=f"^{named} no field in the OpenAI API") as caught:
        generator.check(params)  # refused before any request
    assert "extra_sampling_params=True (divtrace generate: --extra-sampling-params)" in str(caught.value)
    with pytest.raises(UnsupportedSamplingError, match=named):
        generator.generate([GenerationRequest("q0", "Hi", "Hi", (1,))], params)
    # the study's default sampling needs neither
    assert (SamplingParams().top_k, SamplingParams().min_p) == (None, None)


def test_min_p_is_sent_in_extra_body_and_named_when_the_server_refuses_it() -> None:
    """With extra_sampling_params, min_p goes in extra_body (the request's top level) as set, or 0 when unset as
    before min_p existed; a server refusing the request gets an error naming what it carried and what to change."""
    requests = [GenerationRequest("q0", "Hi", "Hi", (1,))]
    with FlakyServer([], default=422) as strict:  # refuses every POST, as a server rejecting unknown fields
        generator = OpenAIGenerator("m", OpenAIOptions(base_url=strict.base_url, extra_sampling_params=True))
        params = SamplingParams(k=1, min_p=0.1, max_new_tokens=4)
        effective = generator.check(params)  # k=1: no probe request
        assert effective["min_p"] == 0.1
        assert effective["extra_body"] == {"top_k": -1, "min_p": 0.1, "repetition_penalty": 1.0}
        with pytest.raises(OpenAIServerError, match=r"HTTP 422 on /completions") as caught:
            generator.generate(requests, params)
        message = str(caught.value)
        assert "extra_body: top_k=-1, min_p=0.1, repetition_penalty=1.0" in message
        assert "min_p=0.1 can only be sent this way: drop it, or use a server that takes it" in message

        unset = SamplingParams(k=1, max_new_tokens=4)
        effective = generator.check(unset)
        assert "min_p" not in effective  # the record and keys of samples drawn before min_p existed
        assert effective["extra_body"] == {"top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0}
        with pytest.raises(OpenAIServerError, match="come from extra_sampling_params: turn it off"):
            generator.generate(requests, unset)
    assert strict.posts == [422, 422]
    sent, neutral = strict.bodies
    assert (sent["min_p"], sent["top_k"], sent["repetition_penalty"], sent["prompt"]) == (0.1, -1, 1.0, "Hi")
    assert (neutral["min_p"], neutral["top_k"]) == (0.0, -1)


def test_cli_min_p_flag_is_validated_refused_or_sent(tmp_path: Path) -> None:
    """``divtrace generate --min-p``: a bad value names the flag; without --extra-sampling-params the openai
    backend refuses it before any request; with it, the requests carry it (here to a server refusing them all)."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Hi\n")
    with FlakyServer([], default=422) as server:

        def generate(out: str, *flags: str) -> subprocess.CompletedProcess[str]:
            command = [
                sys.executable, "-m", "divtrace.cli", "generate", "--backend", "openai", "--model", "m",
                "--base-url", server.base_url, "--prompts", str(prompts), "-k", "2", "--max-new-tokens", "4",
                "--out", str(tmp_path / out), *flags,
            ]  # fmt: skip
            return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)

        bad = generate("bad", "--min-p", "0")
        assert bad.returncode == 2 and "error: invalid value for --min-p: Input should be greater than 0" in text(bad)
        refused = generate("refused", "--min-p", "0.1")
        assert refused.returncode == 2 and "error: min_p=0.1 has no field in the OpenAI API" in text(refused)
        assert "--extra-sampling-params" in text(refused) and server.posts == []  # before any request
        sent = generate("sent", "--min-p", "0.1", "--extra-sampling-params")
        assert sent.returncode == 2 and "HTTP 422" in text(sent) and "min_p=0.1 can only be sent this way" in text(sent)
    assert server.posts and {body["min_p"] for body in server.bodies} == {0.1}


def text(result: subprocess.CompletedProcess[str]) -> str:
    """A command's stderr with its lines joined (the console may fold a long message)."""
    return " ".join(result.stderr.split())


@pytest.mark.slow
def test_min_p_reaches_a_real_server_and_is_recorded(katan: ServerProcess, tmp_path: Path) -> None:
    """Samples drawn with min_p through a real server: every request carried it, every record holds it (llm-katan
    ignores the field: what a server does with it is recorded as sent, not verified)."""
    from divtrace.generate.job import GenerationJob
    from divtrace.generate.prompts import PromptItem
    from divtrace.generate.runner import generate_samples

    params = PARAMS.model_copy(update={"k": 2, "max_new_tokens": 4, "min_p": 0.2})
    items = [PromptItem("p0", PROMPTS[0])]
    with FlakyServer([], upstream=katan.base_url) as proxy:
        generator = create_generator(
            "openai", SERVED, {"base_url": proxy.base_url, "endpoint": "chat", "extra_sampling_params": True}
        )
        generate_samples(generator, GenerationJob.of(items, params, out_dir=tmp_path, checkpoint="served", task="t"))
        generator.close()
    assert proxy.posts == [200, 200] and [body["min_p"] for body in proxy.bodies] == [0.2, 0.2]
    [record] = read_samples(tmp_path / "samples").records
    assert record.sampling and record.sampling["min_p"] == 0.2
    assert record.sampling["extra_body"] == {"top_k": -1, "min_p": 0.2, "repetition_penalty": 1.0}


def test_rendering_per_endpoint() -> None:
    chat = OpenAIGenerator("m", OpenAIOptions(endpoint="chat"))
    rendered, messages = chat.render("Q?", system_prompt="Be brief.", thinking=ThinkingMode.suppressed)
    assert messages == (
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Q?"},
        {"role": "assistant", "content": EMPTY_THINKING_BLOCK},
    )
    assert rendered == "<|system|>\nBe brief.\n<|user|>\nQ?\n<|assistant|>\n" + EMPTY_THINKING_BLOCK
    assert readable_chat(messages) == rendered
    with pytest.raises(DivtraceError, match="always applies the server's chat template"):
        chat.render("Q?", chat_template=False)

    plain = OpenAIGenerator("m")
    assert plain.render("Q?", system_prompt="Be brief.") == ("Be brief.\n\nQ?", None)
    assert plain.render("Q?", thinking=ThinkingMode.suppressed) == ("Q?" + EMPTY_THINKING_BLOCK, None)
    with pytest.raises(DivtraceError, match="without a tokenizer"):
        plain.render("Q?", chat_template=True)
    with pytest.raises(ValueError, match="n_mode\n  Input should be 'auto', 'native' or 'separate'"):
        OpenAIOptions(n_mode="sometimes")  # type: ignore[arg-type]  # the options model refuses it


@pytest.mark.slow
def test_cli_generate_through_a_server(katan: ServerProcess, tmp_path: Path) -> None:
    """``divtrace generate --backend openai`` end to end: a real CLI process, a real server, stored shards."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS[:2]) + "\n")
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "divtrace.cli", "generate", "--backend", "openai", "--model", SERVED,
        "--base-url", katan.base_url, "--endpoint", "chat", "--prompts", str(prompts), "-k", "3",
        "--max-new-tokens", "8", "--temperature", "1.0", "--out", str(out), "--checkpoint", "served",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    records = read_samples(out / "samples").records
    assert [r.prompt for r in records] == PROMPTS[:2]
    for record in records:
        assert record.checkpoint == "served" and len(record.outputs) == 3 and len(set(record.outputs)) > 1
        assert record.sampling and record.sampling["backend"] == "openai"
        assert record.sampling["n_handling"] == "separate"  # the default: a request and a seed per sample
        assert record.sample_seeds and len(set(record.sample_seeds)) == 3


def test_runner_announces_the_total_before_any_request_and_advances_per_sample(
    katan: ServerProcess, tmp_path: Path
) -> None:
    """The bar of ``divtrace generate --backend openai`` knows its total (tokens of the budget) before the first
    request (the ``n`` probe of ``check`` included) and moves once per completed sample, by its max_new_tokens."""
    from divtrace.generate.job import GenerationJob
    from divtrace.generate.prompts import PromptItem
    from divtrace.generate.runner import generate_samples

    params = PARAMS.model_copy(update={"k": 3, "max_new_tokens": 4})
    items = [PromptItem(f"p{i}", prompt) for i, prompt in enumerate(PROMPTS[:2])]
    events: list[tuple[int, int | None, int]] = []  # (done, total, POSTs the server had answered by then)
    with FlakyServer([], upstream=katan.base_url) as proxy:
        generator = create_generator(
            "openai", SERVED, {"base_url": proxy.base_url, "endpoint": "chat", "max_retries": 2, "n_mode": "auto"}
        )
        summary = generate_samples(
            generator,
            GenerationJob.of(items, params, out_dir=tmp_path, checkpoint="served", task="t", shard_size=1),
            progress=lambda event: events.append((event.done, event.total, len(proxy.posts))),
        )
        generator.close()
    total = 2 * params.k * params.max_new_tokens
    assert events[0] == (0, total, 0)  # announced before the n probe and every sample request
    assert {event[1] for event in events} == {total}
    done = [event[0] for event in events]
    assert done == sorted(done) and done[-1] == total
    # llm-katan ignores n: one request, one step of max_new_tokens, per sample
    assert sorted(set(done)) == list(range(0, total + 1, params.max_new_tokens))
    assert summary.samples_written == 2 * params.k
