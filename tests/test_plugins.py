"""The one plug-in registry (divtrace.plugins): lazy loading, unknown names, missing extras, runtime plug-ins used
from a study as ``{name, args}``, typed scoring settings in studies, and content keys in the score markers."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from divtrace import plugins
from divtrace.errors import DivtraceError, ModelLoadError
from divtrace.generate.backends import BACKEND_PACKAGES, BACKENDS, check_installed, create_generator
from divtrace.runs.layout import RunLayout
from divtrace.samples import SampleRecord
from divtrace.score.content_key import content_key
from divtrace.score.metric_spec import MetricSpec
from divtrace.score.metrics import Metric, ScoringContext, metric_class, metric_names, register_metric
from divtrace.score.metrics._base import ValueRange
from divtrace.score.scorer import build_metrics
from divtrace.score.settings import EmbedderSettings, NLISettings
from divtrace.study import Study, load_study, parse_study
from divtrace.study.planned import run_tasks
from divtrace.study.stages import score_stage, scorer_spec
from divtrace.tasks import get_task, task_names
from divtrace.verify import create_verifier, verifier_names

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def cleanup() -> Iterator[list[tuple[plugins.Kind, str]]]:
    """Entries a test registers, removed afterwards."""
    added: list[tuple[plugins.Kind, str]] = []
    yield added
    for kind, name in added:
        plugins.unregister(kind, name)


def _quickstart(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(load_study("quickstart").to_yaml())
    raw.update(changes)
    return raw


def _python(script: str) -> str:
    """The standard output of ``script`` run by a fresh Python (which must succeed)."""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env={"PYTHONPATH": str(SRC)}, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_listing_plugins_imports_no_heavy_module() -> None:
    script = (
        "import sys\n"
        "from divtrace.score.metrics import metric_names\n"
        "from divtrace.verify import verifier_names\n"
        "from divtrace.tasks import task_names\n"
        "from divtrace.generate.backends import BACKENDS\n"
        "from divtrace.cli import app\n"
        "from typer.testing import CliRunner\n"
        "assert 'ead' in metric_names() and 'gsm8k' in verifier_names() and 'gsm8k' in task_names()\n"
        "for command in ('metrics', 'tasks'):\n"
        "    result = CliRunner().invoke(app, [command])\n"
        "    assert result.exit_code == 0, result.output\n"
        "    assert ('sbert' if command == 'metrics' else 'humaneval') in result.output\n"
        "heavy = sorted(m for m in ('torch', 'vllm', 'transformers', 'sentence_transformers') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    assert "HEAVY []" in _python(script)


def test_metric_names_import_no_metric_module() -> None:
    script = (
        "import sys\n"
        "from divtrace.score.metrics import metric_names\n"
        "names = metric_names()\n"
        "modules = ('answers', 'code_ast', 'code_semantic', 'lexical', 'nli', 'semantic')\n"
        "loaded = [m for m in modules if f'divtrace.score.metrics.{m}' in sys.modules]\n"
        "print(len(names), loaded)\n"
    )
    assert _python(script).split(" ", 1) == [str(len(metric_names())), "[]\n"]


def test_every_builtin_plugin_loads_under_its_name() -> None:
    for name in metric_names():
        assert metric_class(name).name == name
    for name in verifier_names():
        assert create_verifier(name).name == name
    assert BACKENDS == ("transformers", "vllm", "openai")
    assert plugins.load("backend", "openai").__name__ == "OpenAIGenerator"
    assert task_names()[:3] == ["tldr", "cnn_dailymail", "xsum"]
    assert plugins.load("task", "gsm8k") is get_task("gsm8k")


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("backend", "unknown generation backend 'nope'; choose one of transformers, vllm, openai"),
        ("metric", "unknown metric 'nope'; known metrics: answer-distinct, answer-entropy, ast,"),
        ("verifier", "unknown verifier 'nope'; known: cruxeval, gsm8k,"),
        ("task", "unknown task 'nope'; known tasks: tldr, cnn_dailymail,"),
    ],
)
def test_unknown_names_list_the_known_ones(kind: plugins.Kind, expected: str) -> None:
    with pytest.raises(DivtraceError) as caught:
        plugins.load(kind, "nope")
    assert str(caught.value).startswith(expected)


def test_wrappers_report_unknown_names() -> None:
    with pytest.raises(DivtraceError, match="unknown metric 'nope'"):
        metric_class("nope")
    with pytest.raises(KeyError, match="unknown verifier 'nope'"):  # still a KeyError for former callers
        create_verifier("nope")
    with pytest.raises(DivtraceError, match=r"unknown task 'nope'.*\(or a task \.yaml file\)"):
        get_task("nope")
    with pytest.raises(DivtraceError, match="unknown generation backend 'nope'"):
        create_generator("nope", "model")


def test_vllm_requirement_keeps_its_message() -> None:
    assert BACKEND_PACKAGES == {
        "vllm": ("vllm", "pip install 'divtrace[vllm]' on a GPU machine, or the CPU build (README, 'vLLM')")
    }


def test_a_missing_extra_is_named_before_anything_is_imported(cleanup: list[tuple[plugins.Kind, str]]) -> None:
    needs = plugins.Requirement("divtrace_no_such_package", "pip install 'divtrace[fancy]'")
    plugins.register("backend", "fancy", "divtrace_no_such_module:FancyGenerator", needs=needs)
    cleanup.append(("backend", "fancy"))
    expected = "the fancy backend needs divtrace_no_such_package: pip install 'divtrace[fancy]'"
    with pytest.raises(ModelLoadError, match=re.escape(expected)):
        check_installed("fancy")
    with pytest.raises(ModelLoadError, match="divtrace\\[fancy\\]"):
        create_generator("fancy", "some-model")
    assert "divtrace_no_such_module" not in sys.modules


def test_a_plugin_backend_is_called_with_the_model_and_its_options_as_given(
    cleanup: list[tuple[plugins.Kind, str]],
) -> None:
    calls: list[tuple[Any, ...]] = []

    def factory(*args: Any) -> str:  # the contract: factory(model) or factory(model, options)
        calls.append(args)
        return "generator"

    plugins.register("backend", "echo", factory)
    cleanup.append(("backend", "echo"))
    assert create_generator("echo", "some-model") == "generator"
    assert create_generator("echo", "some-model", {"anything": 1}) == "generator"  # not validated here
    assert calls == [("some-model",), ("some-model", {"anything": 1})]


def test_a_bad_lazy_reference_is_a_clear_error(cleanup: list[tuple[plugins.Kind, str]]) -> None:
    plugins.register("metric", "broken", "divtrace.score.metrics.lexical:NoSuchMetric")
    cleanup.append(("metric", "broken"))
    with pytest.raises(DivtraceError, match=r"metric plug-in .broken.: cannot import .*NoSuchMetric"):
        metric_class("broken")


def test_a_name_cannot_be_taken_twice(cleanup: list[tuple[plugins.Kind, str]]) -> None:
    with pytest.raises(ValueError, match="metric name 'ead' is already registered"):

        @register_metric
        class OtherEAD(Metric):
            name = "ead"
            description = "clash"

            def score_groups(self, groups: Sequence[Sequence[str]], context: ScoringContext) -> np.ndarray:
                return np.zeros(len(groups))


class LengthSpread(Metric):
    """A third-party metric: the spread of output lengths, times ``scale``."""

    name = "test-length-spread"
    description = "max - min output length (a test plug-in)"
    value_range = ValueRange(0.0)

    def __init__(self, scale: float = 1.0, unit: str = "chars") -> None:
        self.scale = scale
        self.unit = unit

    def settings(self) -> dict[str, Any]:
        return {"scale": self.scale, "unit": self.unit}

    def score_groups(self, groups: Sequence[Sequence[str]], context: ScoringContext) -> np.ndarray:
        return np.array([self.scale * (max(map(len, g)) - min(map(len, g))) for g in groups], dtype=np.float64)


def test_a_runtime_metric_is_used_from_a_study_with_args(
    tmp_path: Path, cleanup: list[tuple[plugins.Kind, str]]
) -> None:
    register_metric(LengthSpread)
    cleanup.append(("metric", LengthSpread.name))
    metrics = ["ead", {"name": LengthSpread.name, "args": {"scale": "2.5"}}]
    study = parse_study(_quickstart(metrics=metrics))
    assert study.metric_names() == ["ead", LengthSpread.name]
    assert study.metrics[1] == MetricSpec(name=LengthSpread.name, args={"scale": "2.5"})
    scorer = scorer_spec(study).scorer()
    spread = scorer.metrics[1]
    assert isinstance(spread, LengthSpread) and spread.scale == 2.5  # validated, then converted
    records = [
        SampleRecord(prompt_id=f"p{i}", prompt="q", outputs=["ab", "abcd"], checkpoint="c", task="t") for i in range(3)
    ]
    result = scorer.score(records)
    values = result.per_prompt.query(f"metric == '{LengthSpread.name}' and subset == 'all'")["value"]
    assert values.tolist() == [5.0, 5.0, 5.0]
    # the frozen study keeps the spec, and loads again
    frozen = tmp_path / "study.yaml"
    frozen.write_text(study.to_yaml())
    assert load_study(frozen).metrics == study.metrics


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"scale": "lots"}, "metrics.1.args.scale: Input should be a valid number"),
        ({"colour": "red"}, "metrics.1.args.colour: Extra inputs are not permitted"),
    ],
)
def test_metric_args_are_validated_when_the_study_loads(
    args: dict[str, Any], message: str, cleanup: list[tuple[plugins.Kind, str]]
) -> None:
    register_metric(LengthSpread)
    cleanup.append(("metric", LengthSpread.name))
    with pytest.raises(DivtraceError, match=message):
        parse_study(_quickstart(metrics=["sbert", {"name": LengthSpread.name, "args": args}]), where="s.yaml")


def test_builtin_metric_args_and_shared_settings() -> None:
    study = parse_study(
        _quickstart(
            metrics=["ead", {"name": "distinct", "args": {"n_max": 3}}, {"name": "nli", "args": {"seed": 7}}],
            nli_model={"model": "roberta-large-mnli", "sentences_per_pair": 2},
        )
    )
    ead, distinct, nli = build_metrics(study.metrics, nli=study.nli_settings(), ead_vocab_size=1000)
    assert ead.settings()["vocab_size"] == 1000 and ead.settings()["vocab_size_source"] == "given"
    assert distinct.settings()["n_max"] == 3
    recorded = nli.settings()
    assert (recorded["model"], recorded["sentences_per_pair"], recorded["seed"]) == ("roberta-large-mnli", 2, 7)
    with pytest.raises(DivtraceError, match=re.escape("metrics.1.args.n_max: Input should be a valid integer")):
        parse_study(_quickstart(metrics=["ead", {"name": "distinct", "args": {"n_max": "five"}}]))
    with pytest.raises(DivtraceError, match="metrics: ead named more than once"):
        parse_study(_quickstart(metrics=["ead", {"name": "ead", "args": {"n_max": 4}}]))


def test_plain_studies_dump_as_before() -> None:
    study = load_study("quickstart")
    dumped = yaml.safe_load(study.to_yaml())
    assert dumped["metrics"] == ["ead", "sbert", "vendi"]
    assert dumped["embedder"] is None and dumped["nli_model"] is None
    named = parse_study(_quickstart(embedder="sentence-transformers/all-mpnet-base-v2", nli_model="m"))
    again = yaml.safe_load(named.to_yaml())
    assert (again["embedder"], again["nli_model"]) == ("sentence-transformers/all-mpnet-base-v2", "m")
    assert named.embedder_settings() == EmbedderSettings(model="sentence-transformers/all-mpnet-base-v2")
    assert named.nli_settings() == NLISettings(model="m")


def test_settings_mappings_in_a_study() -> None:
    study = parse_study(
        _quickstart(
            embedder={"model": "sentence-transformers/all-mpnet-base-v2", "max_seq_length": 128},
            code_embedder={"model": "microsoft/unixcoder-base", "pooling": "cls"},
            metrics=["sbert", "code-sbert"],
        )
    )
    assert study.embedder_settings().max_seq_length == 128
    code = study.code_embedder_settings()
    assert code is not None and (code.pooling, code.max_seq_length) == ("cls", 512)  # the code defaults stay
    assert Study.model_validate(yaml.safe_load(study.to_yaml())) == study
    with pytest.raises(DivtraceError, match=re.escape("key 'embedder.max_seq_lenght': Extra inputs are not permitted")):
        parse_study(_quickstart(embedder={"model": "x", "max_seq_lenght": 3}))
    with pytest.raises(DivtraceError, match=re.escape("key 'nli_model.pooling'")):
        parse_study(_quickstart(nli_model={"model": "x", "pooling": "sideways"}))


def _tiny_model(directory: Path) -> Path:
    directory.mkdir()
    (directory / "config.json").write_text('{"hidden_size": 4}')
    (directory / "model.safetensors").write_bytes(bytes(range(64)))
    return directory


def _score_key(tmp_path: Path, **changes: Any) -> str:
    study = parse_study(_quickstart(**changes))
    units = score_stage(study, run_tasks(study)).units(RunLayout(tmp_path / "run"))
    return units[0].key


def test_the_score_key_follows_the_embedder_files(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "config.json").write_text('{"hidden_size": 4}')
    (source / "model.safetensors").write_bytes(bytes(range(64)))
    model = tmp_path / "embedder"
    shutil.copytree(source, model)
    before = _score_key(tmp_path, embedder=str(model))
    assert _score_key(tmp_path, embedder=str(model)) == before
    weights = model / "model.safetensors"
    weights.write_bytes(b"\xff" + weights.read_bytes()[1:])  # same size, same path, other weights
    assert _score_key(tmp_path, embedder=str(model)) != before
    # the content part of the key is the files': a copy elsewhere shares it
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(model, elsewhere)
    assert (
        content_key(EmbedderSettings(model=str(elsewhere))).split(":")[1]
        == (content_key(EmbedderSettings(model=str(model))).split(":")[1])
    )


def test_models_without_local_files_key_by_name(tmp_path: Path) -> None:
    settings = NLISettings(model="no-such-org/no-such-model", revision="abc")
    assert content_key(settings) == f"{settings.fingerprint()}:no-such-org/no-such-model@abc"
    # an embedder no metric uses does not enter the key; one that a metric uses does
    assert _score_key(tmp_path, metrics=["ead"], embedder="a/b") == _score_key(tmp_path, metrics=["ead"])
    assert _score_key(tmp_path, metrics=["sbert"], embedder="a/b") != _score_key(tmp_path, metrics=["sbert"])


def test_nli_and_code_models_enter_the_score_key_only_when_a_metric_uses_them(tmp_path: Path) -> None:
    plain = _score_key(tmp_path, metrics=["ead"])
    assert _score_key(tmp_path, metrics=["ead"], nli_model="a/nli") == plain
    assert _score_key(tmp_path, metrics=["ead"], code_embedder="a/code") == plain
    with_nli = _score_key(tmp_path, metrics=["ead", "nli"], nli_model="a/nli")
    assert with_nli != _score_key(tmp_path, metrics=["ead", "nli"], nli_model="b/nli")
    with_code = _score_key(tmp_path, metrics=["ead", "code-sbert"], code_embedder="a/code")
    assert with_code != _score_key(tmp_path, metrics=["ead", "code-sbert"], code_embedder="b/code")
