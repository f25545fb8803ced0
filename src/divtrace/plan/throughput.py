"""Generation throughput for plan estimates: measured figures where we have them, labelled assumptions elsewhere.

:data:`THROUGHPUTS` is a small table of rates (tokens/s of one model replica) by backend, device and model (an
exact model reference, or a parameter count standing for its size class). Each entry says where its figure comes
from: ``measured: BENCHMARK`` (a figure measured by that script of ``benchmarks/`` and copied here, since the
results directory is not shipped), ``measured: benchmarks/results/FILE`` (read from a results file present at
plan time), or ``assumed``. :func:`rate_for` picks the best entry for a
checkpoint and says plainly when nothing measured applies.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from divtrace.generate.models import QUICKSTART_MODELS, QUICKSTART_PREFIX

#: Devices a rate can be for: a CPU, a GPU (one replica, whatever its tensor-parallel size), or a remote server.
DEVICES = ("cpu", "gpu", "server")


@dataclass(frozen=True)
class Throughput:
    """One generation rate: ``tokens_per_s`` for ``backend`` on ``device``, for ``model`` (an exact reference) or,
    when ``model`` is None, any model in the size class of ``parameters`` (None: any size).

    ``source`` is ``measured: BENCHMARK`` / ``measured: benchmarks/results/FILE`` or ``assumed``; ``note`` says how
    it was measured or why it is assumed.
    """

    backend: str
    device: str
    tokens_per_s: float
    source: str
    note: str
    model: str | None = None
    parameters: float | None = None

    @property
    def measured(self) -> bool:
        """True when the figure was measured (its source names the benchmark or its results file)."""
        return self.source.startswith("measured")


#: Where the quickstart figures come from: ``divtrace run`` of the quickstart study on the 2-core development machine
#: (``DIVTRACE_CACHE_DIR=$(mktemp -d) divtrace run --out DIR``), each phase's wall time divided by the slowdown the
#: machine's load average caused while it ran (:func:`cpu_slowdown`), i.e. figures for an otherwise idle machine.
QUICKSTART_MEASUREMENT = "measured: divtrace run quickstart, 2 CPU cores"

#: The rates the plan estimates from. Measured entries come from the quickstart (its tasks: 48 new tokens, stop
#: strings, 64 rows in one batch), and from the benchmarks on the 2-core CPU machine (bench_generate.py: 32 rows
#: per batch, 32 new tokens, end of sequence ignored, no stop strings; bench_vllm.py: 8 prompts x K=8,
#: enforce_eager). The quickstart's come first: a real run's rate wins over a benchmark's for the same model.
THROUGHPUTS: tuple[Throughput, ...] = (
    Throughput(
        "transformers", "cpu", 161.7, QUICKSTART_MEASUREMENT,
        "gemma-3-270m, float32, oneDNN linear layers, finished rows dropped: the quickstart's three checkpoints "
        "(3 x 6,144 budget tokens) in 114 s, the generate stage of a warm run (model loads included; "
        "bench_first_run.py on the idle machine)",
        model="quickstart:gemma-3-270m", parameters=270e6,
    ),
    Throughput(
        "transformers", "cpu", 60.2, QUICKSTART_MEASUREMENT,
        "smollm2-135m-instruct, float32: the quickstart's 6,144-token budget twice (cold and warm cache) in 204 s "
        "idle-equivalent (180 s and 24 s: runs on this shared machine vary that much)",
        model="quickstart:smollm2-135m-instruct", parameters=135e6,
    ),
    Throughput(
        "transformers", "cpu", 48.0, "measured: bench_generate.py, 2 CPU cores",
        "bench_generate.py --model quickstart:gemma-3-270m, 2 CPU threads, float32",
        model="quickstart:gemma-3-270m", parameters=270e6,
    ),
    Throughput(
        "transformers", "cpu", 101.0, "measured: bench_generate.py, 2 CPU cores",
        "bench_generate.py --model quickstart:smollm2-135m-instruct, 2 CPU threads, float32",
        model="quickstart:smollm2-135m-instruct", parameters=135e6,
    ),
    Throughput(
        "vllm", "cpu", 211.0, "measured: bench_vllm.py, 2 CPU cores",
        "bench_vllm.py --model quickstart:smollm2-135m-instruct on CPU, enforce_eager",
        model="quickstart:smollm2-135m-instruct", parameters=135e6,
    ),
    Throughput(
        "vllm", "gpu", 2500.0, "assumed",
        "a 7B model on one H100-class GPU with vLLM; not measured yet (bench_vllm.py on a GPU would measure it)",
        parameters=7e9,
    ),
    Throughput(
        "transformers", "gpu", 300.0, "assumed",
        "a 7B model in bfloat16 on one H100-class GPU with transformers, 32 rows per batch; not measured",
        parameters=7e9,
    ),
    Throughput("transformers", "cpu", 48.0, "assumed", "for any model size: the gemma-3-270m CPU figure"),
    Throughput("vllm", "gpu", 2500.0, "assumed", "for any model size: the 7B-on-one-GPU assumption"),
    Throughput("vllm", "cpu", 211.0, "assumed", "for any model size: the SmolLM2-135M CPU figure"),
    Throughput("transformers", "gpu", 300.0, "assumed", "for any model size: the 7B-on-one-GPU assumption"),
    Throughput("openai", "server", 500.0, "assumed", "a served model: depends entirely on the server"),
)  # fmt: skip

#: Rows per batch the transformers rates were measured with (32): on a CPU, a decoding step costs about as much with
#: fewer rows (the vocabulary-wide work of a step does not shrink with the batch), so a smaller batch counts as this
#: many rows in the plan (:func:`divtrace.plan.summary.batched_tokens`).
RATE_ROWS = 32

#: Size classes by parameter count (upper bounds), for matching a rate measured on one model to another.
SIZE_CLASSES: tuple[tuple[float, str], ...] = (
    (1e9, "<1B"),
    (4e9, "1-4B"),
    (15e9, "4-15B"),
    (40e9, "15-40B"),
    (math.inf, ">40B"),
)

#: A rate measured on one model counts as measured for another at most this many times larger or smaller.
SAME_SIZE_FACTOR = 2.0

_SIZE = re.compile(r"(?<![A-Za-z0-9.])(\d+(?:\.\d+)?)([BbMm])(?![A-Za-z0-9])")


def model_parameters(model: str) -> float | None:
    """The parameter count of ``model``: a packaged quickstart model's recorded size, else the first size written
    in the name (``7B``, ``0.5B``, ``270m``, ``135M``), else None (unknown)."""
    if model.startswith(QUICKSTART_PREFIX):
        spec = QUICKSTART_MODELS.get(model[len(QUICKSTART_PREFIX) :])
        return spec.parameters if spec is not None else None
    match = _SIZE.search(model.rsplit("/", 1)[-1])
    if match is None:
        return None
    return float(match.group(1)) * (1e9 if match.group(2) in "Bb" else 1e6)


def size_class(parameters: float) -> str:
    """The size class label of a parameter count (``<1B``, ``1-4B``, ``4-15B``, ``15-40B``, ``>40B``)."""
    return next(label for bound, label in SIZE_CLASSES if parameters < bound)


def format_parameters(parameters: float | None) -> str:
    """``7B``, ``0.5B``, ``270M``, or ``unknown size``."""
    if parameters is None:
        return "unknown size"
    if parameters >= 1e9:
        return f"{parameters / 1e9:g}B"
    return f"{parameters / 1e6:g}M"


@dataclass(frozen=True)
class Rate:
    """The rate chosen for one checkpoint: tokens/s, its entry's source, and a sentence saying how it applies.

    ``source`` is the entry's (``measured: benchmarks/results/FILE`` or ``assumed``); ``measured`` is True only when
    the entry was measured on this model or one of its size class; ``explanation`` states how the figure applies and
    any assumption ("no measured rate for 7B on transformers/cpu; assumed ...").
    """

    tokens_per_s: float
    measured: bool
    source: str
    explanation: str

    @property
    def label(self) -> str:
        """``48 tok/s (measured: benchmarks/results/...)`` or ``2,500 tok/s (assumed)``."""
        return f"{self.tokens_per_s:,.{0 if self.tokens_per_s >= 10 else 1}f} tok/s ({self.source})"


def rate_for(backend: str, device: str, model: str, table: tuple[Throughput, ...] = THROUGHPUTS) -> Rate:
    """The best rate in ``table`` for ``model`` on ``backend``/``device``.

    Order of preference: a measured entry for this exact model; a measured entry for a model within
    :data:`SAME_SIZE_FACTOR` of its size (the closest); an assumed entry for its size class; a measured entry of
    another size, scaled by the ratio of parameter counts (assumed); the backend's assumed any-size entry. Raises
    ValueError when the table has nothing at all for ``backend``/``device``.
    """
    candidates = [entry for entry in table if entry.backend == backend and entry.device == device]
    if not candidates:
        raise ValueError(f"no throughput entry for backend {backend!r} on {device!r}")
    where = f"{backend}/{device}"
    for entry in candidates:
        if entry.measured and entry.model == model:
            return Rate(entry.tokens_per_s, True, entry.source, f"measured for {model} on {where} ({entry.note})")
    parameters = model_parameters(model)
    size = format_parameters(parameters)
    if parameters is not None:
        sized = [entry for entry in candidates if entry.parameters is not None]
        same = [entry for entry in sized if size_class(entry.parameters or 0) == size_class(parameters)]
        near = [e for e in sized if e.measured and _distance(e, parameters) <= math.log(SAME_SIZE_FACTOR)]
        if near:
            entry = min(near, key=lambda e: _distance(e, parameters))
            return Rate(entry.tokens_per_s, True, entry.source, (
                f"measured for {entry.model} ({format_parameters(entry.parameters)}, within "
                f"{SAME_SIZE_FACTOR:g}x of {size}) on {where} ({entry.note})"
            ))  # fmt: skip
        assumed = [entry for entry in same if not entry.measured]
        if assumed:
            entry = assumed[0]
            return Rate(entry.tokens_per_s, False, "assumed", (
                f"no measured rate for {size} on {where}; assumed {entry.tokens_per_s:,.0f} tok/s ({entry.note})"
            ))  # fmt: skip
        scalable = [entry for entry in sized if entry.measured]
        if scalable:
            entry = min(scalable, key=lambda e: _distance(e, parameters))
            scaled = entry.tokens_per_s * (entry.parameters or parameters) / parameters
            return Rate(scaled, False, "assumed", (
                f"no measured rate for {size} on {where}; assumed {scaled:,.1f} tok/s: {entry.tokens_per_s:,.0f} "
                f"tok/s measured for {entry.model} ({_file(entry)}) scaled by parameter count "
                f"{format_parameters(entry.parameters)}/{size}"
            ))  # fmt: skip
    fallback = next((entry for entry in candidates if entry.model is None and entry.parameters is None), None)
    if fallback is None:
        raise ValueError(f"no size-independent throughput entry for {where}")
    return Rate(fallback.tokens_per_s, False, "assumed", (
        f"no measured rate for {model} ({size}) on {where}; assumed {fallback.tokens_per_s:,.0f} tok/s "
        f"({fallback.note})"
    ))  # fmt: skip


def measured_throughputs(results_dir: str | Path) -> tuple[Throughput, ...]:
    """Entries measured by the benchmarks whose result files are in ``results_dir``: ``generate*.json``
    (bench_generate.py: transformers, ``tokens_per_s_divtrace`` on its recorded ``device``) and ``vllm.json``
    (bench_vllm.py: ``tokens_per_s`` on a GPU, ``cpu_tokens_per_s`` on CPU). A file that is missing, unreadable,
    or does not say its model, device and rate gives no entry (a figure is never guessed onto a device)."""
    directory = Path(results_dir)
    found: list[Throughput] = []
    for path in sorted(directory.glob("generate*.json")):
        result = _read_json(path)
        device = _device(result.get("device"))
        rate = result.get("tokens_per_s_divtrace")
        model = result.get("model")
        if device and isinstance(rate, int | float) and rate > 0 and isinstance(model, str):
            found.append(_measured("transformers", device, float(rate), path, model, "bench_generate.py"))
    vllm = _read_json(directory / "vllm.json")
    device = _device(vllm.get("device"))
    rate = vllm.get("tokens_per_s" if device == "gpu" else "cpu_tokens_per_s")
    model = vllm.get("model")
    if device and isinstance(rate, int | float) and rate > 0 and isinstance(model, str):
        found.append(_measured("vllm", device, float(rate), directory / "vllm.json", model, "bench_vllm.py"))
    return tuple(found)


def throughput_table(results_dir: str | Path | None = None) -> tuple[Throughput, ...]:
    """The rates to estimate from: entries measured in ``results_dir`` (:func:`measured_throughputs`; they come
    first, so a fresh measurement of a model wins), then :data:`THROUGHPUTS`."""
    return (*measured_throughputs(results_dir), *THROUGHPUTS) if results_dir is not None else THROUGHPUTS


def _measured(backend: str, device: str, rate: float, path: Path, model: str, bench: str) -> Throughput:
    return Throughput(
        backend, device, rate, f"measured: benchmarks/results/{path.name}", f"{bench} --model {model} ({path})",
        model=model, parameters=model_parameters(model),
    )  # fmt: skip


def _read_json(path: Path) -> dict[str, object]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _device(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    if value.startswith("cuda"):
        return "gpu"
    return "cpu" if value == "cpu" else None


def _distance(entry: Throughput, parameters: float) -> float:
    """How far apart in size an entry's model and ``parameters`` are (absolute log ratio)."""
    return abs(math.log((entry.parameters or parameters) / parameters))


def _file(entry: Throughput) -> str:
    return entry.source.removeprefix("measured:").strip()


# ------------------------------------------------------------------------------------------------------------------
# The rest of a run: loading models, verifying, scoring, the analysis and the report. Generation is not all of a
# run's time: on the quickstart, the first load of each packaged model (its GGUF de-quantised into the cache),
# embedding and the report take as long as drawing the tokens.


@dataclass(frozen=True)
class Figure:
    """One cost besides drawing tokens: ``value`` (seconds, or items per second as the table says), ``source``
    (``measured: ...`` or ``assumed``) and ``note`` (how it was measured, or why it is assumed)."""

    value: float
    source: str
    note: str

    @property
    def measured(self) -> bool:
        """True when the figure was measured."""
        return self.source.startswith("measured")


#: Seconds to load a packaged quickstart model: (first use, when its GGUF file is de-quantised into the cache;
#: later uses, from the cache).
QUICKSTART_LOAD_S: dict[str, tuple[Figure, Figure]] = {
    "gemma-3-270m": (
        Figure(56.0, QUICKSTART_MEASUREMENT, "GGUF de-quantised to safetensors, then loaded"),
        Figure(4.0, QUICKSTART_MEASUREMENT, "loaded from the cache"),
    ),
    "smollm2-135m-instruct": (
        Figure(13.0, QUICKSTART_MEASUREMENT, "GGUF de-quantised to safetensors, then loaded"),
        Figure(3.0, QUICKSTART_MEASUREMENT, "loaded from the cache"),
    ),
}

#: Seconds to load any other model, by (backend, device).
LOAD_S: dict[tuple[str, str], Figure] = {
    ("transformers", "cpu"): Figure(30.0, "assumed", "a small model from the hub cache; larger ones take longer"),
    ("transformers", "gpu"): Figure(60.0, "assumed", "a 7B model in bfloat16 from the hub cache onto one GPU"),
    ("vllm", "cpu"): Figure(23.0, "measured: bench_vllm.py, 2 CPU cores", "engine start, SmolLM2-135M"),
    ("vllm", "gpu"): Figure(120.0, "assumed", "engine start with a 7B model from the hub cache (CUDA graphs)"),
    ("openai", "server"): Figure(0.0, "assumed", "the server is already running"),
}

#: Samples verified per second, by verifier (the code verifiers run every sample in a sandbox).
VERIFY_RATES: dict[str, Figure] = {
    "gsm8k": Figure(400.0, QUICKSTART_MEASUREMENT, "the arithmetic task's short answers"),
    "humaneval": Figure(35.7, "measured: bench_verify.py, 2 CPU cores", "4 sandboxes in parallel"),
    "mbpp": Figure(35.7, "assumed", "as HumanEval (bench_verify.py): one sandboxed program per sample"),
    "cruxeval": Figure(35.7, "assumed", "as HumanEval (bench_verify.py): one sandboxed program per sample"),
    "math": Figure(20.0, "assumed", "symbolic equivalence (math-verify) of each answer"),
    "ifeval": Figure(50.0, "assumed", "IFEval's instruction checks"),
    "truthfulqa": Figure(1000.0, "assumed", "string containment"),
}

#: Texts embedded per second, by device (the packaged all-MiniLM-L6-v2 on CPU; larger embedders are slower).
EMBED_RATES: dict[str, Figure] = {
    "cpu": Figure(100.0, QUICKSTART_MEASUREMENT, "all-MiniLM-L6-v2 over the quickstart's outputs"),
    "gpu": Figure(1000.0, "assumed", "a sentence embedder on one GPU"),
}

#: Seconds per prompt and metric (every subset of a prompt: all, correct, the curve levels), besides embedding.
METRIC_S_PER_PROMPT = Figure(0.01, QUICKSTART_MEASUREMENT, "EAD, SBERT and Vendi over 8 outputs, every subset")

#: Seconds per premise/hypothesis pair the NLI classifier reads, by device.
NLI_S_PER_PAIR: dict[str, Figure] = {
    "cpu": Figure(0.05, "assumed", "an MNLI classifier on CPU"),
    "gpu": Figure(0.002, "assumed", "an MNLI classifier on one GPU"),
}

#: Seconds of the analysis and the report together (bootstraps, plots, the HTML), besides scoring.
#: One judge call (gpt-4.1-mini answering a judge prompt): assumed, not measured here (no hosted judge offline).
JUDGE_S_PER_CALL = Figure(3.0, "assumed", "an assumed 3 s per judge call (a hosted judge's latency)")
ANALYSIS_S = Figure(2.0, QUICKSTART_MEASUREMENT, "analyze and report of 2 checkpoints x 2 tasks")


def machine_load() -> tuple[float, int] | None:
    """This machine's 1-minute load average and the CPUs this process may use; None where the system cannot say."""
    import os

    try:
        return os.getloadavg()[0], len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def cpu_slowdown(load: float, cores: int) -> float:
    """How much slower CPU work that keeps ``cores`` CPUs busy runs on a machine whose other processes keep ``load``
    CPUs busy (its load average) than on an idle one: ``(load + cores) / cores``; 1.0 below 1.25 (about idle)."""
    factor = (load + cores) / max(cores, 1)
    return factor if factor >= 1.25 else 1.0
