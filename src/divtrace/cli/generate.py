"""``divtrace generate``: K samples per prompt from one checkpoint, stored as resumable shards."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel

from divtrace.cli import checks
from divtrace.cli.app import command
from divtrace.cli.console import say
from divtrace.cli.options import flag
from divtrace.cli.progress import progress_display
from divtrace.errors import DivtraceError
from divtrace.generate.backends.options import (
    DEFAULT_CPU_KV_CACHE_GIB,
    OpenAIOptions,
    TransformersOptions,
    VLLMOptions,
)
from divtrace.generate.params import MIN_STUDY_K
from divtrace.generate.stops import StopPolicy
from divtrace.progress import ProgressEvent, scoped


def _default(options: type[BaseModel], name: str) -> str:
    """``(default: VALUE)``: the default of backend option ``name``, read from its options model (stated there)."""
    value = options.model_fields[name].default
    shown = ("on" if value else "off") if isinstance(value, bool) else value
    return f"(default: {shown})"


class ThinkingOption(str, enum.Enum):
    """``--thinking``: leave chain-of-thought to the model, or suppress it with an empty pre-filled block."""

    native = "native"
    suppressed = "suppressed"


class BackendOption(str, enum.Enum):
    """``--backend``: where the samples are drawn."""

    transformers = "transformers"
    vllm = "vllm"
    openai = "openai"


class AdapterModeOption(str, enum.Enum):
    """``--adapter-mode`` of the vllm backend: how ``--adapter`` is applied."""

    lora = "lora"
    merged = "merged"


class EndpointOption(str, enum.Enum):
    """``--endpoint`` of the openai backend."""

    completions = "completions"
    chat = "chat"


class NModeOption(str, enum.Enum):
    """``--n-mode`` of the openai backend: how the K samples of a prompt are requested."""

    separate = "separate"
    auto = "auto"
    native = "native"


@command()
def generate(
    model: Annotated[str, typer.Option(help="quickstart:NAME, hub id, local dir, .gguf file, or served model name")],
    out: Annotated[Path, typer.Option(help="run directory; samples go to OUT/samples/CHECKPOINT/TASK/")],
    revision: Annotated[str | None, typer.Option(help="hub revision (branch, tag or commit) of --model")] = None,
    adapter: Annotated[
        str | None,
        typer.Option(help="transformers/vllm: a LoRA adapter on --model (PEFT adapter dir, or quickstart:NAME)"),
    ] = None,
    prompts: Annotated[
        Path | None, typer.Option(help="prompts file: JSONL with 'prompt' (and 'prompt_id'), or one per line")
    ] = None,
    task: Annotated[
        str | None, typer.Option(help="a task (divtrace tasks) or task .yaml file: its prompts, stops and length")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="directory with task data (TASK.jsonl/.parquet) for offline use")
    ] = None,
    k: Annotated[
        int, typer.Option("-k", min=MIN_STUDY_K, help="samples per prompt (K; diversity needs at least 2)")
    ] = 16,
    limit: Annotated[int | None, typer.Option(min=1, help="use only the first N prompts (as lm-eval's --limit)")] = (
        None
    ),
    temperature: Annotated[float, typer.Option(help="sampling temperature (> 0)")] = 0.6,
    top_p: Annotated[float, typer.Option(help="nucleus sampling mass, in (0, 1]")] = 0.95,
    top_k: Annotated[int | None, typer.Option(help="top-k filtering (default: off)")] = None,
    min_p: Annotated[
        float | None,
        typer.Option(help="min-p filtering, in (0, 1]: keep tokens at least min_p times the top one (default: off)"),
    ] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option(help="tokens per sample at most (default: the task's, or 512 with --prompts)")
    ] = (None),
    stop: Annotated[list[str] | None, typer.Option(help="stop string, repeatable (default: the task's)")] = None,
    stops: Annotated[
        StopPolicy,
        typer.Option(
            help="where stop strings apply: auto (completion prompts only, not chat templates), always, never"
        ),
    ] = StopPolicy.auto,
    seed: Annotated[int, typer.Option(help="base seed; each sample's seed derives from it")] = 1234,
    thinking: Annotated[ThinkingOption, typer.Option(help="chain-of-thought: native or suppressed")] = (
        ThinkingOption.native
    ),
    system_prompt: Annotated[str | None, typer.Option(help="system message (chat template) or preamble")] = None,
    chat_template: Annotated[
        bool | None, flag("default: on when the model has one", "--chat-template/--no-chat-template")
    ] = None,
    backend: Annotated[BackendOption, typer.Option(help="where to sample")] = BackendOption.transformers,
    checkpoint: Annotated[str | None, typer.Option(help="checkpoint label (default: from the model ref)")] = None,
    task_label: Annotated[
        str | None, typer.Option(help="task label of the samples (default: the task's name, or the prompts file stem)")
    ] = None,
    shard_size: Annotated[int, typer.Option(min=1, help="prompts per stored shard (the unit of resumption)")] = 8,
    device: Annotated[str | None, typer.Option(help="transformers/vllm: device (default cuda if available)")] = None,
    dtype: Annotated[str | None, typer.Option(help="transformers/vllm: float32, bfloat16, float16")] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(help=f"transformers: samples per forward batch {_default(TransformersOptions, 'batch_size')}"),
    ] = None,
    threads: Annotated[int | None, typer.Option(help="transformers: torch CPU threads")] = None,
    tensor_parallel_size: Annotated[
        int | None, typer.Option(help=f"vllm: GPUs per model {_default(VLLMOptions, 'tensor_parallel_size')}")
    ] = None,
    gpu_memory_utilization: Annotated[
        float | None,
        typer.Option(help="vllm: share of GPU memory the engine may take (default: vLLM's)"),
    ] = None,
    kv_cache_gib: Annotated[
        float | None,
        typer.Option(
            help=f"vllm: KV-cache size in GiB (CPU default {DEFAULT_CPU_KV_CACHE_GIB:g}; GPU: from the memory share)"
        ),
    ] = None,
    enforce_eager: Annotated[
        bool | None,
        flag(
            "vllm: no compilation/CUDA graphs (faster start; recorded, samples may differ) "
            + _default(VLLMOptions, "enforce_eager"),
            "--enforce-eager/--no-enforce-eager",
        ),
    ] = None,
    max_model_len: Annotated[int | None, typer.Option(help="vllm: context length cap (default: the model's)")] = None,
    adapter_mode: Annotated[
        AdapterModeOption | None,
        typer.Option(
            help="vllm: apply --adapter at run time (lora) or merged into a cached copy (merged) "
            + _default(VLLMOptions, "adapter_mode")
        ),
    ] = None,
    base_url: Annotated[str | None, typer.Option(help="openai: server URL, e.g. http://127.0.0.1:8000/v1")] = None,
    endpoint: Annotated[
        EndpointOption | None, typer.Option(help=f"openai: completions or chat {_default(OpenAIOptions, 'endpoint')}")
    ] = None,
    max_concurrency: Annotated[
        int | None,
        typer.Option(help=f"openai: requests in flight at most {_default(OpenAIOptions, 'max_concurrency')}"),
    ] = None,
    max_retries: Annotated[
        int | None,
        typer.Option(
            help="openai: retries (with backoff) on 429/5xx/connection errors " + _default(OpenAIOptions, "max_retries")
        ),
    ] = None,
    n_mode: Annotated[
        NModeOption | None,
        typer.Option(
            help="openai: separate (a request and seed per sample), auto (n=K where honoured) or native "
            + _default(OpenAIOptions, "n_mode")
        ),
    ] = None,
    tokenizer: Annotated[
        str | None, typer.Option(help="openai completions: tokenizer id/path to render the chat template locally")
    ] = None,
    extra_sampling_params: Annotated[
        bool | None,
        flag(
            "openai: send top_k, min_p etc. in extra_body (vLLM/SGLang servers) "
            + _default(OpenAIOptions, "extra_sampling_params"),
            "--extra-sampling-params/--no-extra-sampling-params",
        ),
    ] = None,
) -> None:
    """Sample K outputs per prompt from one checkpoint; resumable (finished shards are never redone)."""
    from divtrace.generate.backends import backend_options, check_installed, create_generator
    from divtrace.generate.job import GenerationJob
    from divtrace.generate.params import SamplingSpec
    from divtrace.generate.prompts import read_prompts
    from divtrace.generate.protocol import Generator
    from divtrace.generate.render_options import RenderOptions
    from divtrace.generate.resume import ModelSource
    from divtrace.generate.runner import generate_if_needed
    from divtrace.generate.store import safe_name
    from divtrace.generate.thinking import ThinkingMode

    if (prompts is None) == (task is None):
        raise DivtraceError("give the prompts with exactly one of --prompts FILE and --task NAME")
    checks.writable_directory(out)
    if backend is not BackendOption.openai:
        checks.model_reference(model)
    if adapter is not None:
        checks.adapter_reference(adapter, backend.value)
    elif adapter_mode is not None:
        raise DivtraceError("--adapter-mode goes with --adapter")
    check_installed(backend.value)
    # The backend flags by option name; the backend picks its own (None: not given, the options model's default).
    backend_flags = {
        "revision": revision,
        "adapter": adapter,
        "adapter_mode": adapter_mode.value if adapter_mode is not None else None,
        "device": device,
        "dtype": dtype,
        "batch_size": batch_size,
        "threads": threads,
        "tensor_parallel_size": tensor_parallel_size,
        "gpu_memory_utilization": gpu_memory_utilization,
        "kv_cache_gib": kv_cache_gib,
        "enforce_eager": enforce_eager,
        "max_model_len": max_model_len,
        "base_url": base_url,
        "endpoint": endpoint.value if endpoint is not None else None,
        "max_concurrency": max_concurrency,
        "max_retries": max_retries,
        "n_mode": n_mode.value if n_mode is not None else None,
        "tokenizer": tokenizer,
        "extra_sampling_params": extra_sampling_params,
    }
    options = backend_options(backend.value, backend_flags)
    task_stop: tuple[str, ...] = ()
    task_max_new_tokens = 512
    if task is not None:
        from divtrace.tasks import get_task, load_prompts

        chosen = get_task(task)
        items, origin = load_prompts(chosen, data_dir, limit)
        say(f"task {chosen.name}: {origin}")
        task_stop, task_max_new_tokens, default_label = chosen.stop, chosen.max_new_tokens, chosen.name
    else:
        assert prompts is not None
        checks.existing_inputs([prompts], "prompts")
        items = read_prompts(prompts)[:limit] if limit is not None else read_prompts(prompts)
        default_label = prompts.stem
    settings = SamplingSpec(k=k, temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p, seed=seed)
    params = settings.params(
        stop=tuple(stop) if stop is not None else task_stop,
        task_max_new_tokens=task_max_new_tokens,
        max_new_tokens=max_new_tokens,
    )
    label = checkpoint or safe_name(model.removeprefix("quickstart:"))
    if checkpoint is None and adapter is not None:  # not the base's label: its samples are another checkpoint's
        label = safe_name(f"{label}+{Path(adapter.removeprefix('quickstart:')).name}")
    task_name = task_label or default_label
    unit = f"{label}/{task_name}"

    with progress_display() as display:
        events = scoped(display, stage="generate")

        def load() -> Generator:  # called only when some shard is left to generate
            display(ProgressEvent("generate", unit, 0, None, "", f"loading {model} ({backend.value})"))
            return create_generator(backend.value, model, options)

        render = RenderOptions(system_prompt, chat_template, ThinkingMode(thinking.value), stops)
        summary = generate_if_needed(
            load,
            GenerationJob(tuple(items), params, out, label, task_name, render, shard_size),
            ModelSource(backend.value, model, revision, options),
            events,
        )
    if not summary.model_loaded:
        say(f"all {summary.shards} shard(s) already done in {out}; the model was not loaded")
        return
    say(
        f"{summary.samples_written} samples written in {summary.written_shards} shard(s); "
        f"{summary.skipped_shards} of {summary.shards} shard(s) were already done -> {out}"
    )
