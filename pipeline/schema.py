"""params.yaml's sections as typed configuration, all checked when the CLI starts, before any stage runs.

One dataclass per section (and sub-block); a new key is one field in one place. `check_params` parses the whole
file: every section, each extractor's `config` (the extractor's own schema in `EXTRACTOR_CONFIGS`, merged with a
corpus's override), and every model as each corpus trains it (`train`, the corpus's `train`, the model entry and
the corpus's `train.models.<model>` merged exactly as the train stage merges them). Adapter `options` belong to
each adapter and are checked there; here only the structure around them.

Consumers still read the params mapping (`lookup`, `section`): the checks make that safe, and `check_params`
returns the typed objects for code that wants them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

from pipeline.params import ConfigError, merged
from pipeline.typed_config import Invalid, Name, parse, setting

Modality = Literal["audio", "visual", "text"]
Condition = Literal["azz", "zvz", "zzl", "avz", "azl", "zvl", "avl"]
DEVICE = r"auto|cpu|cuda(:[0-9]+)?|mps"
DEVICE_MEANS = "auto, cpu, cuda, cuda:<n> or mps"


def _unique(values: list[Any], key: str) -> None:
    if len(set(map(str, values))) != len(values):
        raise Invalid(f"{key} repeats a value: {values}", key, "list each value once")


def _non_empty(values: list[Any] | dict[str, Any] | None, key: str) -> None:
    if values is not None and not values:
        raise Invalid(f"{key} must not be empty", key, f"give at least one value for {key}")


# ----------------------------------------------------------------------------------------------------- corpora

VAL_RULES = ("partner", "next", "official")  # speaker folds: partner, next; session folds: next; holdout: official


@dataclass(kw_only=True)
class Protocol:
    """`corpora.<c>.splits.<name>`: one protocol of the split file (pipeline/splits.py)."""

    protocol: Literal["speaker_folds", "session_folds", "holdout", "random_speakers"] = setting(
        example="speaker_folds")
    val: str | float | None = setting(None)
    test_sessions: list[str] | None = setting(None)
    official: dict[str, str] | None = setting(None)
    test_share: float | None = setting(None, gt=0, lt=1)
    val_share: float | None = setting(None, gt=0, lt=1)
    folds: int | None = setting(None, ge=1)

    def check(self) -> None:
        if isinstance(self.val, float) and not 0 < self.val < 1:
            raise Invalid(f"val must be a share in (0, 1) or a rule name, got {self.val}", "val", "e.g. val: 0.1")
        if isinstance(self.val, str) and self.val not in VAL_RULES:
            raise Invalid(f"val must be one of {', '.join(VAL_RULES)} or a share in (0, 1), got {self.val!r}", "val",
                          _closest(self.val, VAL_RULES))


@dataclass(kw_only=True)
class RunSettings:
    """`train:` (and a corpus's `train:`): where and how runs go; a model entry may set them too."""

    device: str = setting("auto", pattern=DEVICE, means=DEVICE_MEANS)
    threads: int | None = setting(None, ge=1)
    workers: int = setting(1, ge=1)
    seeds: list[int] = setting([0], ge=0, example=[0, 1, 2])
    folds: Literal["all"] | list[int | str] = setting("all", ge=0)
    features: dict[Modality, Name] | None = setting(None)
    allow_absent_modalities: list[Modality] = setting([], example=["visual"])

    def check(self) -> None:
        _non_empty(self.seeds, "seeds")
        _unique(self.seeds, "seeds")
        if isinstance(self.folds, list):
            _non_empty(self.folds, "folds")
            _unique(self.folds, "folds")


@dataclass(kw_only=True)
class CorpusTrain(RunSettings):
    """`corpora.<c>.train`: the run settings for this corpus, and per-model overrides under `models`."""

    models: dict[Name, dict[str, Any]] = setting({})  # each checked against its model's family


@dataclass(kw_only=True)
class ExtractorOverride:
    """`corpora.<c>.extractors.<x>`: any stage key of `extractors.<x>`, and part of its `config`."""

    modality: Modality | None = setting(None)
    executor: Literal["local", "ray"] | None = setting(None)
    workers: int | None = setting(None, ge=1)
    threads_per_worker: int | None = setting(None, ge=1)
    start_method: Literal["fork", "spawn", "forkserver"] | None = setting(None)
    shard_size: int | None = setting(None, ge=1)
    max_failure_rate: float | None = setting(None, ge=0, le=1)
    expected_missing: list[str] | None = setting(None)
    ray: dict[str, Any] | None = setting(None)
    config: dict[str, Any] | None = setting(None)


@dataclass(kw_only=True)
class Corpus:
    """`corpora.<c>`: the adapter, the corpus root, the adapter's own options and what differs for this corpus."""

    adapter: str = setting(example="iemocap")
    root: str = setting(example="/data/IEMOCAP_full_release")
    options: dict[str, Any] = setting({})  # the adapter's own; it checks them (pipeline/corpora/common.py)
    modalities: list[Modality] | None = setting(None, example=["audio", "text"])
    extractors: dict[Name, ExtractorOverride] = setting({})
    train: CorpusTrain | None = setting(None)
    splits: dict[Name, Protocol] | None = setting(None)
    # which of `train_models` / `finetune_models` get a stage on this corpus (null: all); [] for a corpus that is
    # only a cross-corpus target (demo_b)
    train_models: list[Name] | None = setting(None)

    def check(self) -> None:
        if not self.adapter:
            raise Invalid("adapter must name a corpus adapter", "adapter", "e.g. adapter: iemocap")
        if not self.root.strip():
            raise Invalid("root must be the path of the corpus as released", "root", "e.g. root: /data/IEMOCAP")
        if self.modalities is not None:
            _non_empty(self.modalities, "modalities")
            _unique(self.modalities, "modalities")


@dataclass(kw_only=True)
class Splits:
    seed: int = setting(0, ge=0)
    labelled_fractions: list[float] = setting([1.0], gt=0, le=1, example=[0.05, 0.1, 0.3, 1.0])

    def check(self) -> None:
        _non_empty(self.labelled_fractions, "labelled_fractions")
        _unique(self.labelled_fractions, "labelled_fractions")


# -------------------------------------------------------------------------------------------------- extractors

@dataclass(kw_only=True)
class RayOptions:
    """`extractors.<x>.ray` (pipeline/extract/ray_executor.py)."""

    address: str = setting("local")
    actors: int | None = setting(None, ge=1)
    cpus_per_actor: float | None = setting(None, gt=0)
    gpus_per_actor: float = setting(0, ge=0)
    num_cpus: float | None = setting(None, gt=0)
    num_gpus: float | None = setting(None, ge=0)
    max_restarts: int = setting(3, ge=-1)
    max_task_retries: int = setting(3, ge=-1)
    unit_retries: int = setting(2, ge=0)
    in_flight_per_actor: int = setting(2, ge=1)
    actor_start_timeout_s: float = setting(600, gt=0)
    runtime_env: dict[str, Any] | None = setting(None)


@dataclass(kw_only=True)
class Extractor:
    """`extractors.<x>`: the stage keys; `config` is the extractor's own (checked by `EXTRACTOR_CONFIGS`)."""

    modality: Modality = setting(example="audio")
    extractor: str | None = setting(None)  # the registered extractor this entry runs; null: the entry's own name
    executor: Literal["local", "ray"] = setting("local")
    workers: int = setting(1, ge=1)
    threads_per_worker: int = setting(1, ge=1)
    start_method: Literal["fork", "spawn", "forkserver"] | None = setting(None)
    shard_size: int = setting(256, ge=1)
    max_failure_rate: float = setting(0.05, ge=0, le=1)
    expected_missing: list[str] = setting([])
    ray: RayOptions | None = setting(None)
    config: dict[str, Any] = setting({})


@dataclass(kw_only=True)
class AudioConfig:
    sample_rate: int = setting(example=16000, ge=8000)
    min_frames: int = setting(example=10, ge=0)
    silence_dbfs: float = setting(example=-90.0, le=0)
    decode_timeout_s: float = setting(example=120, gt=0)
    batch_size: int = setting(example=4, ge=1)


@dataclass(kw_only=True)
class CompareConfig(AudioConfig):
    """`extractors.compare.config` (pipeline/extract/compare.py)."""

    downsample: int = setting(example=10, ge=1)


@dataclass(kw_only=True)
class CompareUtteranceConfig(AudioConfig):
    """`extractors.compare_utterance.config`."""

    feature_set: Literal["ComParE_2016", "eGeMAPSv02"] = setting(example="ComParE_2016")


@dataclass(kw_only=True)
class BertConfig:
    """`extractors.bert.config` and `extractors.hf_text.config` (pipeline/extract/text_encoder.py): every key, as
    params.yaml writes them."""

    model: str = setting(example="bert-large-uncased")
    revision: str | None = setting(None)
    layer: str = setting("last", pattern=r"last|mean_last_[1-9][0-9]*", means="last or mean_last_<k>")
    pooling: Literal["tokens", "mean", "cls"] = setting("tokens")
    keep_special_tokens: bool = setting(False)
    max_tokens: int | None = setting(None, ge=1)
    token_budget: int = setting(2048, ge=1)
    batch_overhead_tokens: int = setting(32, ge=0)
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = setting("auto")
    device: str = setting("auto", pattern=DEVICE, means=DEVICE_MEANS)
    cpu_linear: Literal["onednn", "torch"] = setting("onednn")
    normalize: Literal["NFC", "NFKC", "NFD", "NFKD"] | None = setting("NFC")
    fix_mojibake: bool = setting(True)


@dataclass(kw_only=True)
class HfAudioConfig:
    """`extractors.hf_audio.config` (pipeline/extract/hf_audio.py)."""

    model: str = setting(example="microsoft/wavlm-large")
    revision: str | None = setting(None)
    layer: str | int = setting("last", pattern=r"last|all|mean_last_[1-9][0-9]*|-?[0-9]+",
                               means="last, all, mean_last_<k> or a hidden-state index")
    level: Literal["frame", "utterance"] = setting("frame")
    chunk_s: float = setting(20.0, gt=0)
    overlap_s: float = setting(2.0, ge=0)
    sample_budget: int = setting(960_000, ge=1)
    batch_overhead_s: float = setting(0.5, ge=0)
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = setting("auto")
    device: str = setting("auto", pattern=DEVICE, means=DEVICE_MEANS)
    min_duration_s: float = setting(0.1, ge=0)
    silence_dbfs: float = setting(-90.0, le=0)
    decode_timeout_s: float = setting(120.0, gt=0)

    def check(self) -> None:
        if self.overlap_s >= self.chunk_s:
            raise Invalid(f"overlap_s ({self.overlap_s}) must be below chunk_s ({self.chunk_s})", "overlap_s",
                          "e.g. chunk_s: 20.0, overlap_s: 2.0")
        if self.layer == "all" and self.level != "utterance":
            raise Invalid("layer: all keeps one utterance mean per hidden state; it needs level: utterance", "level",
                          "level: utterance")


@dataclass(kw_only=True)
class DensefaceNetwork:
    """models/denseface.py DensefaceConfig, every key optional (checked against the checkpoint's)."""

    depth: int | None = setting(None, ge=1)
    growth_rate: int | None = setting(None, ge=1)
    n_blocks: int | None = setting(None, ge=1)
    compression: float | None = setting(None, gt=0, le=1)
    bottleneck: bool | None = setting(None)
    dropout: float | None = setting(None, ge=0, lt=1)
    n_classes: int | None = setting(None, ge=1)
    in_channels: int | None = setting(None, ge=1)


@dataclass(kw_only=True)
class Detector:
    min_face_size: int = setting(example=20, ge=12)
    thresholds: list[float] = setting(example=[0.6, 0.7, 0.7], gt=0, lt=1)
    factor: float = setting(example=0.709, gt=0, lt=1)

    def check(self) -> None:
        if len(self.thresholds) != 3:
            raise Invalid(f"thresholds must hold three values (P-, R-, O-Net), got {self.thresholds}", "thresholds",
                          "e.g. thresholds: [0.6, 0.7, 0.7]")


@dataclass(kw_only=True)
class FaceTrackConfig:
    """`extractors.faces.config` (pipeline/extract/face_track.py): detection once per corpus."""

    fps: float = setting(example=10, gt=0)
    detector: Detector = setting(example={"min_face_size": 20, "thresholds": [0.6, 0.7, 0.7], "factor": 0.709})
    face_selection: Literal["largest", "probability"] = setting(example="largest")
    min_face_probability: float = setting(example=0.9, ge=0, lt=1)
    margin: float = setting(example=0.2, ge=0)
    crop_size: int = setting(example=64, ge=8)
    color: Literal["gray", "rgb"] = setting(example="gray")
    detect_batch: int = setting(example=8, ge=1)
    batch_size: int = setting(example=4, ge=1)
    device: str = setting("auto", pattern=DEVICE, means=DEVICE_MEANS)


@dataclass(kw_only=True)
class DensefaceExtractConfig:
    """`extractors.denseface.config` (pipeline/extract/face_embed.py): embeds the face track's crops."""

    checkpoint: str = setting(example="checkpoints/denseface/ferplus.pt")
    network: DensefaceNetwork | None = setting(None)
    embed_batch: int = setting(example=4, ge=1)
    batch_size: int = setting(example=4, ge=1)
    device: str = setting("auto", pattern=DEVICE, means=DEVICE_MEANS)


@dataclass(kw_only=True)
class HfVisionConfig:
    """`extractors.hf_vision.config` (pipeline/extract/hf_vision.py)."""

    model: str = setting(example="openai/clip-vit-large-patch14")
    revision: str | None = setting(None)
    pooling: Literal["cls", "mean"] = setting("cls")
    crops_per_batch: int = setting(64, ge=1)
    batch_size: int = setting(8, ge=1)
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = setting("auto")
    device: str = setting("auto", pattern=DEVICE, means=DEVICE_MEANS)


# An extractor's `config` schema by registered name; an extractor a lab registers without one keeps its config
# unchecked here (its constructor checks it).
EXTRACTOR_CONFIGS: dict[str, type] = {"compare": CompareConfig, "compare_utterance": CompareUtteranceConfig,
                                      "bert": BertConfig, "hf_text": BertConfig, "hf_audio": HfAudioConfig,
                                      "faces": FaceTrackConfig, "denseface": DensefaceExtractConfig,
                                      "hf_vision": HfVisionConfig}


# --------------------------------------------------------------------------------------------------- denseface

@dataclass(kw_only=True)
class FerData:
    fer2013: str | None = setting(example="data/fer2013/fer2013.csv")
    ferplus: str | None = setting(example="data/FERPlus/fer2013new.csv")
    targets: Literal["majority", "distribution"] = setting(example="majority")
    drop_single_votes: bool = setting(example=True)
    majority_share: float = setting(example=0.5, ge=0, lt=1)


@dataclass(kw_only=True)
class DensefaceTrainNetwork:
    """The network Denseface training builds (models/denseface.py DensefaceConfig; the classes come from the data)."""

    depth: int = setting(example=100, ge=1)
    growth_rate: int = setting(example=12, ge=1)
    n_blocks: int = setting(example=3, ge=1)
    compression: float = setting(example=0.5, gt=0, le=1)
    bottleneck: bool = setting(example=True)
    dropout: float = setting(example=0.0, ge=0, lt=1)

    def check(self) -> None:
        per_layer = self.n_blocks * (2 if self.bottleneck else 1)
        body = self.depth - self.n_blocks - 1
        if body <= 0 or body % per_layer:
            raise Invalid(f"depth {self.depth} does not fit {self.n_blocks} blocks: depth - {self.n_blocks + 1} must "
                          f"be a positive multiple of {per_layer}", "depth", "e.g. depth: 100 (or 40, 250)")


@dataclass(kw_only=True)
class DensefaceInput:
    size: int = setting(example=64, ge=16)
    mean: float = setting(example=131.0754)
    std: float = setting(example=47.858177, gt=0)


@dataclass(kw_only=True)
class DensefaceAugment:
    enabled: bool = setting(example=True)
    flip: bool = setting(example=True)
    max_rotation_deg: float = setting(example=10.0, ge=0)
    max_scale: float = setting(example=0.1, ge=0)
    max_shift: float = setting(example=0.1, ge=0, lt=0.5)


@dataclass(kw_only=True)
class DensefaceOptim:
    epochs: int = setting(example=60, ge=1)
    batch_size: int = setting(example=64, ge=1)
    eval_batch_size: int = setting(example=256, ge=1)
    lr: float = setting(example=0.1, gt=0)
    momentum: float = setting(example=0.9, ge=0, lt=1)
    nesterov: bool = setting(example=True)
    weight_decay: float = setting(example=1.0e-4, ge=0)
    lr_milestones: list[float] = setting(example=[0.5, 0.75], gt=0, lt=1)
    lr_gamma: float = setting(example=0.1, gt=0)


@dataclass(kw_only=True)
class DensefaceTrain:
    """`denseface.train` (pipeline/denseface/train.py); a set under `denseface.sets` overrides part of it."""

    data: FerData = setting(example={"fer2013": "data/fer2013.csv", "ferplus": "data/fer2013new.csv"})
    network: DensefaceTrainNetwork = setting(example={"depth": 100, "growth_rate": 12, "n_blocks": 3,
                                                      "compression": 0.5, "bottleneck": True, "dropout": 0.0})
    input: DensefaceInput = setting(example={"size": 64, "mean": 131.0754, "std": 47.858177})
    augment: DensefaceAugment = setting(example={"enabled": False, "flip": True, "max_rotation_deg": 10.0,
                                                 "max_scale": 0.1, "max_shift": 0.1})
    optim: DensefaceOptim = setting(example={"epochs": 60})
    seed: int = setting(example=0, ge=0)
    device: str = setting(example="auto", pattern=DEVICE, means=DEVICE_MEANS)


@dataclass(kw_only=True)
class Denseface:
    train: dict[str, Any] | None = setting(None)  # DensefaceTrain, parsed in check_params with the sets merged
    sets: dict[Name, dict[str, Any]] = setting({})


# ------------------------------------------------------------------------------------------------------ models

FAMILY_NAMES = ("utt_fusion", "mmin", "mmgcn", "ssmm", "culture")


@dataclass(kw_only=True)
class ModelBase(RunSettings):
    """What every model entry holds besides its family's hyper-parameters (pipeline/train.py)."""

    family: Literal["utt_fusion", "mmin", "mmgcn", "ssmm", "culture"] = setting(example="utt_fusion")
    protocol: Name = setting(example="speaker")
    init_from: Name | None = setting(None)
    labelled_fractions: list[float] | None = setting(None, gt=0, le=1, example=[0.05, 0.1, 0.3, 1.0])
    use_unlabelled: bool = setting(True)
    modalities: list[Modality] | None = setting(None, example=["audio", "text"])

    @classmethod
    def variant(cls, value: dict[str, Any]) -> type:
        family = value.get("family")
        if cls is not ModelBase or family is None:
            return cls
        if not isinstance(family, str) or family not in FAMILIES:
            import difflib

            close = difflib.get_close_matches(str(family), FAMILY_NAMES, n=1)
            raise Invalid(f"family must be one of {', '.join(FAMILY_NAMES)}, got {family!r}", "family",
                          f"did you mean {close[0]}?" if close else "use one of the families above")
        return FAMILIES[family]

    def check(self) -> None:
        RunSettings.check(self)
        _non_empty(self.labelled_fractions, "labelled_fractions")
        if self.features is None:
            raise Invalid("features is not set (here or under train:)", "features",
                          "e.g. features: {audio: compare, visual: denseface, text: bert}")


@dataclass(kw_only=True)
class Encoder:
    audio_hidden: int = setting(example=128, ge=1)
    visual_hidden: int = setting(example=128, ge=1)
    text_embedding: int = setting(example=128, ge=1)
    text_filters: int = setting(example=128, ge=1)
    text_kernel_heights: list[int] = setting(example=[3, 4, 5], ge=1)
    text_dropout: float = setting(example=0.5, ge=0, lt=1)
    pool_over_padding: bool = setting(example=True)


@dataclass(kw_only=True)
class Frames:
    audio: int | None = setting(None, ge=1)
    visual: int | None = setting(None, ge=1)
    text: int | None = setting(None, ge=1)


@dataclass(kw_only=True)
class UttFusionModel(ModelBase):
    """The utt_fusion family (models/utt_fusion.py, models/recipe.py)."""

    encoder: Encoder = setting(example={"audio_hidden": 128})
    frames: Frames = setting(example={"audio": None, "visual": 50, "text": 22})
    normalise: list[Modality] = setting(example=["audio"])
    classifier_hidden: list[int] = setting(example=[128, 128], ge=1)
    dropout: float = setting(example=0.3, ge=0, lt=1)
    lr: float = setting(example=2.0e-4, gt=0)
    betas: list[float] = setting(example=[0.9, 0.999], ge=0, lt=1)
    weight_decay: float = setting(example=0.0, ge=0)
    batch_size: int = setting(example=128, ge=1)
    eval_batch_size: int = setting(example=512, ge=1)
    epochs_constant: int = setting(example=10, ge=0)
    epochs_decay: int = setting(example=10, ge=0)
    clip_norm: float = setting(example=0.5, gt=0)
    clip_scope: Literal["per_network", "global"] = setting(example="per_network")
    train_conditions: list[Condition] = setting(example=["avl"])
    train_sampling: Literal["expand", "random"] = setting(example="expand")
    select_on: Literal["azz", "zvz", "zzl", "avz", "azl", "zvl", "avl", "average"] = setting(example="avl")

    def check(self) -> None:
        ModelBase.check(self)
        if len(self.betas) != 2:
            raise Invalid(f"betas must hold two values, got {self.betas}", "betas", "e.g. betas: [0.9, 0.999]")
        _non_empty(self.train_conditions, "train_conditions")
        if self.epochs_constant + self.epochs_decay < 1:
            raise Invalid("epochs_constant + epochs_decay must be at least 1", "epochs_constant",
                          "e.g. epochs_constant: 10")


@dataclass(kw_only=True)
class LossWeights:
    ce: float = setting(example=1.0, ge=0)
    forward: float = setting(example=4.0, ge=0)
    backward: float = setting(example=2.0, ge=0)


@dataclass(kw_only=True)
class MminModel(UttFusionModel):
    """The mmin family (models/mmin.py)."""

    imagination: Literal["cra", "ae"] = setting(example="cra")
    ae_layers: list[int] = setting(example=[256, 128, 64], ge=1)
    n_blocks: int = setting(example=5, ge=1)
    transition: bool = setting(example=True)
    cycle: bool = setting(example=True)
    loss_weights: LossWeights = setting(example={"ce": 1.0, "forward": 4.0, "backward": 2.0})
    init: Literal["kaiming", "pytorch"] = setting(example="kaiming")
    tsne_max_items: int = setting(example=1000, ge=0)


@dataclass(kw_only=True)
class MmgcnModel(ModelBase):
    """The mmgcn family (models/mmgcn.py)."""

    pooling: Literal["mean", "max"] = setting(example="mean")
    standardize: list[Modality] = setting(example=["audio"])
    modalities: Literal["a", "v", "t", "av", "at", "vt", "avt"] = setting(example="avt")
    fusion: Literal["graph", "early"] = setting(example="graph")
    graph: bool = setting(example=True)
    layers: int = setting(example=4, ge=0)
    hidden: int = setting(example=200, ge=2)
    gcn_hidden: int = setting(example=100, ge=1)
    text_context: bool = setting(example=True)
    context_layers: int = setting(example=2, ge=1)
    speaker_embedding: Literal["text", "all", "none"] = setting(example="text")
    speaker_ids: Literal["party", "global"] = setting(example="party")
    alpha: float = setting(example=0.1, ge=0, le=1)
    lambda_: float = setting(example=0.5, gt=0, name="lambda")
    gamma: float = setting(example=1.0, ge=0)
    dropout: float = setting(example=0.4, ge=0, lt=1)
    lr: float = setting(example=3.0e-4, gt=0)
    weight_decay: float = setting(example=3.0e-5, ge=0)
    epochs: int = setting(example=20, ge=1)
    batch_dialogues: int = setting(example=16, ge=1)
    class_weights: Literal["inverse_frequency", "none"] = setting(example="inverse_frequency")
    clip_norm: float | None = setting(example=None, gt=0)

    def check(self) -> None:
        ModelBase.check(self)
        if self.hidden % 2:
            raise Invalid(f"hidden must be even (the BiLSTM halves it), got {self.hidden}", "hidden",
                          "e.g. hidden: 200")
        if self.graph and self.layers < 1:
            raise Invalid(f"layers must be >= 1 with graph: true, got {self.layers}", "layers", "e.g. layers: 4")


@dataclass(kw_only=True)
class SsmmModel(ModelBase):
    """The ssmm family (models/ssmm.py)."""

    variant: Literal["ssmm", "supervised"] = setting(example="ssmm")
    pooling: Literal["mean", "max"] = setting(example="mean")
    normalise: bool = setting(example=True)
    hidden: list[int] = setting(example=[512, 256], ge=1)
    latent: int = setting(example=128, ge=1)
    classifier_hidden: list[int] = setting(example=[128], ge=1)
    dropout: float = setting(example=0.0, ge=0, lt=1)
    epochs: int = setting(example=60, ge=1)
    warmup_epochs: int = setting(example=10, ge=0)
    select_after_warmup: bool = setting(example=True)
    batch_size: int = setting(example=128, ge=1)
    lr: float = setting(example=1.0e-3, gt=0)
    betas: list[float] = setting(example=[0.9, 0.999], ge=0, lt=1)
    weight_decay: float = setting(example=0.0, ge=0)
    clip_norm: float | None = setting(example=None, gt=0)
    recon_weight: float = setting(example=0.2, ge=0)
    mmd_weight: float = setting(example=0.1, ge=0)
    mmd_kernel_scales: list[float] = setting(example=[0.25, 0.5, 1.0, 2.0, 4.0], gt=0)
    mismatch_mmd: bool = setting(example=False)
    mismatch_weight: float = setting(example=0.1, ge=0)
    pseudo_label_weight: float = setting(example=1.0, ge=0)
    pseudo_label_threshold: float = setting(example=0.95, gt=0, le=1)
    kaiming_init: bool = setting(example=True)

    def check(self) -> None:
        ModelBase.check(self)
        _non_empty(self.mmd_kernel_scales, "mmd_kernel_scales")
        if len(self.betas) != 2:
            raise Invalid(f"betas must hold two values, got {self.betas}", "betas", "e.g. betas: [0.9, 0.999]")
        if self.select_after_warmup and self.warmup_epochs >= self.epochs:
            raise Invalid(f"select_after_warmup needs epochs ({self.epochs}) > warmup_epochs "
                          f"({self.warmup_epochs})", "warmup_epochs", "lower warmup_epochs or raise epochs")


@dataclass(kw_only=True)
class Reversal:
    gamma: float = setting(example=10.0, gt=0)
    max_weight: float = setting(example=1.0, ge=0)


@dataclass(kw_only=True)
class CultureModel(UttFusionModel):
    """The culture family (models/culture_adv.py): trained on a cross-corpus protocol (`cross_models`)."""

    variant: Literal["adversarial", "source_only", "in_corpus"] = setting(example="adversarial")
    discriminator_hidden: list[int] = setting(example=[128], ge=1)
    culture_weight: float = setting(example=1.0, ge=0)
    reversal: Reversal = setting(example={"gamma": 10.0, "max_weight": 1.0})


# The family of a model entry decides its schema; a new family is one dataclass and one line here.
FAMILIES: dict[str, type] = {"utt_fusion": UttFusionModel, "mmin": MminModel, "mmgcn": MmgcnModel,
                             "ssmm": SsmmModel, "culture": CultureModel}


# ------------------------------------------------------------------------------------------------ cross-corpus

@dataclass(kw_only=True)
class CrossCorpus:
    """`cross_corpus.<name>` (pipeline/cross_corpus.py): source corpora -> a target corpus over a shared class
    set; each corpus's labels mapped onto it (unmapped labels dropped and counted)."""

    sources: list[Name] = setting(example=["iemocap"])
    target: Name = setting(example="msp_improv")
    classes: list[str] = setting(example=["ang", "hap", "neu", "sad"])
    mapping: dict[Name, dict[str, str]] = setting(example={"iemocap": {"exc": "hap"}})
    target_folds: int = setting(example=4, ge=2)
    source_val: float = setting(example=0.1, ge=0, lt=1)
    train: CorpusTrain | None = setting(None)  # run settings and model overrides for this protocol

    def check(self) -> None:
        _non_empty(self.sources, "sources")
        _unique(self.sources, "sources")
        _non_empty(self.classes, "classes")
        _unique(self.classes, "classes")


# ------------------------------------------------------------------------------------------------ report, export

@dataclass(kw_only=True)
class ReportTable:
    title: str = setting(example="MMIN family: WA/UA per test condition")
    kind: Literal["conditions", "full", "sweep"] = setting(example="conditions")
    models: list[Name] | dict[str, Name] = setting(example=["utt_fusion", "mmin"])
    metrics: list[str] | None = setting(None)
    metric: str | None = setting(None)
    condition: str | None = setting(None)
    name: str | None = setting(None)


@dataclass(kw_only=True)
class ReportPlots:
    dpi: int = setting(example=100, ge=10)
    confusion: dict[str, Any] = setting(example={"conditions": ["avl"], "normalize": True})
    bars: dict[str, Any] = setting(example={"metric": "ua"})
    curves: dict[str, Any] = setting(example={"loss": "train_loss", "score": "val_ua"})
    tsne: dict[str, Any] = setting(example={"models": ["mmin"], "perplexity": 30})


@dataclass(kw_only=True)
class ReportProvenance:
    stores: list[str] = setting(example=["features/"])
    code: list[str] = setting(example=["pipeline/", "models/"])
    md5_chars: int = setting(example=8, ge=1, le=32)


@dataclass(kw_only=True)
class ReportClaim:
    """`report.claims.orderings[i]`: a seed paper's claim that `better` beats `worse` (pipeline/report/stats.py)."""

    better: Name = setting(example="mmin")
    worse: Name = setting(example="utt_fusion")
    metric: str = setting(example="ua")
    condition: str | None = setting(None)  # null: report.full_condition
    fraction: float | Literal["all"] | None = setting(None, gt=0, le=1)  # null: the full-label runs
    paper: str = setting("")
    worse_condition: str | None = setting(None)  # null: `condition`; else one model's two conditions compared


@dataclass(kw_only=True)
class ClaimBootstrap:
    resamples: int = setting(10000, ge=100)
    confidence: float = setting(0.95, gt=0, lt=1)
    seed: int = setting(0, ge=0)


@dataclass(kw_only=True)
class ReportClaims:
    bootstrap: ClaimBootstrap | None = setting(None)
    orderings: list[ReportClaim] = setting([])


@dataclass(kw_only=True)
class ReportCrossTsne:
    before: Name = setting(example="culture_source_only")
    after: Name = setting(example="culture_adv")


@dataclass(kw_only=True)
class ReportCross:
    """`report.cross` (pipeline/report/cross.py): the cross-corpus protocols' tables, claims and t-SNE."""

    protocols: list[Name] = setting(example=["demo_to_demo_b"])
    models: dict[str, Name] = setting(example={"Adversarial": "culture_adv"})
    metrics: list[str] = setting(example=["wa", "ua", "macro_f1"])
    tsne: ReportCrossTsne | None = setting(None)


@dataclass(kw_only=True)
class Report:
    """`report:` (pipeline/report/stage.py checks the tables' content when it renders them)."""

    corpora: list[Name] = setting(example=["demo"])
    out_dir: str = setting(example="reports")
    decimals: int = setting(example=4, ge=0, le=10)
    group_rows_by: Literal["metric", "model"] = setting(example="metric")
    columns: dict[str, str] = setting(example={"avl": "{a,v,t}"})
    full_condition: str = setting(example="avl")
    metric_labels: dict[str, str] = setting(example={"ua": "UA"})
    provenance: ReportProvenance = setting(example={"stores": ["features/"], "code": ["pipeline/"], "md5_chars": 8})
    plots: ReportPlots = setting(example={"dpi": 100})
    tables: list[ReportTable] = setting(example=[{"title": "T", "kind": "full", "models": ["mmgcn"],
                                                  "metrics": ["ua"]}])
    claims: ReportClaims | None = setting(None)
    cross: ReportCross | None = setting(None)

    def check(self) -> None:
        inside_project(self.out_dir, "out_dir")
        _non_empty(self.tables, "tables")


@dataclass(kw_only=True)
class MminExport:
    model: Name = setting(example="mmin")
    protocol: Name = setting(example="speaker")
    files: dict[Modality, str] = setting(example={"audio": "comparE", "visual": "denseface", "text": "bert_large"})
    mean_std: str = setting(example="comparE_mean_std")
    missing: Literal["zero_row", "empty"] = setting(example="zero_row")
    valid_frames_only: bool = setting(example=True)
    config_file: str = setting(example="IEMOCAP_config.json")

    def check(self) -> None:
        if set(self.files) != {"audio", "visual", "text"} or not all(self.files.values()):
            raise Invalid(f"files must name a file for each of audio, visual, text, got {sorted(self.files)}",
                          "files", "e.g. files: {audio: comparE, visual: denseface, text: bert_large}")


@dataclass(kw_only=True)
class MmgcnExport:
    model: Name = setting(example="mmgcn")
    protocol: Name = setting(example="dialogue")
    fold: int | str = setting(example=0)
    file: str = setting(example="IEMOCAP_features.pkl")
    speakers: Literal["onehot", "letters"] = setting(example="onehot")
    layout: Literal["iemocap", "meld"] = setting(example="iemocap")
    pickle_protocol: int = setting(example=4, ge=2, le=5)


@dataclass(kw_only=True)
class MmsaExport:
    model: Name = setting(example="utt_fusion")
    protocol: Name = setting(example="speaker")
    fold: int | str = setting(example=0)
    file: str = setting(example="unaligned.pkl")
    max_frames: dict[Modality, int | None] = setting(example={"audio": None, "visual": 50, "text": 50})
    regression: Literal["class_index", "valence"] = setting(example="class_index")
    pickle_protocol: int = setting(example=4, ge=2, le=5)

    def check(self) -> None:
        if any(v is not None and v < 1 for v in self.max_frames.values()):
            raise Invalid(f"max_frames must be null or at least 1, got {self.max_frames}", "max_frames",
                          "e.g. max_frames: {audio: null, visual: 50, text: 50}")


@dataclass(kw_only=True)
class MertoolsExport:
    model: Name = setting(example="utt_fusion")
    protocol: Name = setting(example="speaker")
    fold: int | str = setting(example=0)
    features: dict[Modality, str] = setting(example={"audio": "compare-FRA", "visual": "denseface-FRA",
                                                     "text": "bert-FRA"})
    level: Literal["frame", "utterance"] = setting(example="frame")

    def check(self) -> None:
        names = list(self.features.values())
        if set(self.features) != {"audio", "visual", "text"} or len(set(names)) != 3 or not all(names):
            raise Invalid(f"features must name a distinct folder for each of audio, visual, text, got {self.features}",
                          "features", "e.g. features: {audio: compare-FRA, visual: denseface-FRA, text: bert-FRA}")


EXPORT_CONFIGS: dict[str, type] = {"mmin": MminExport, "mmgcn": MmgcnExport, "mmsa": MmsaExport,
                                   "mertools": MertoolsExport}


@dataclass(kw_only=True)
class Export:
    mmin: MminExport | None = setting(None)
    mmgcn: MmgcnExport | None = setting(None)
    mmsa: MmsaExport | None = setting(None)
    mertools: MertoolsExport | None = setting(None)


# ----------------------------------------------------------------------------------------------------- the file

@dataclass(kw_only=True)
class Params:
    """The whole params file. Every section is optional here; a stage that needs one says so when it reads it."""

    corpora: dict[Name, Corpus] | None = setting(None)
    splits: Splits | None = setting(None)
    extract: list[Name] | None = setting(None)
    extractors: dict[Name, Extractor] | None = setting(None)
    denseface: Denseface | None = setting(None)
    train_models: list[Name] | None = setting(None)
    finetune_from: Name | None = setting(None)
    finetune_models: list[Name] | None = setting(None)
    train: RunSettings | None = setting(None)
    models: dict[Name, dict[str, Any]] | None = setting(None)  # each parsed by its family in check_params
    report: Report | None = setting(None)
    export: Export | None = setting(None)
    cross_corpus: dict[Name, CrossCorpus] | None = setting(None)
    cross_models: list[Name] | None = setting(None)  # trained on every cross_corpus protocol (train-cross stages)


def inside_project(path: str, key: str) -> None:
    """An output path must stay inside the project: relative, and never climbing out with `..`."""
    posix, windows = PurePosixPath(path), PureWindowsPath(path)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or ".." in posix.parts:
        raise Invalid(f"{key} {path!r} leaves the project; outputs are written inside it", key,
                      f"give a relative path such as {PurePosixPath(path).name or 'reports'}")


@dataclass(kw_only=True)
class CheckedParams:
    """The typed result of `check_params`: the sections, each extractor's config and each model per corpus."""

    params: Params
    extractor_configs: dict[tuple[str | None, str], Any]  # (corpus or None, extractor) -> its config dataclass
    models: dict[tuple[str | None, str], ModelBase]  # (corpus or None, model) -> the merged model settings
    denseface_sets: dict[str, DensefaceTrain]


def model_settings(params: dict[str, Any], model: str, corpus: str | None) -> dict[str, Any]:
    """`train`, the corpus's `train`, `models.<model>` and the corpus's `train.models.<model>`, merged as the train
    stage merges them (pipeline/train.py `model_config`)."""
    corpus_train = dict(((params.get("corpora") or {}).get(corpus) or {}).get("train") or {}) if corpus else {}
    overrides = dict(corpus_train.pop("models", {}) or {})
    run = merged(dict(params.get("train") or {}), corpus_train)
    return merged(merged(run, (params.get("models") or {}).get(model) or {}), overrides.get(model) or {})


def check_params(params: dict[str, Any]) -> CheckedParams:
    """Every section of a loaded params file, typed and checked; the first problem is a one-line ConfigError
    naming the file, the line and the key."""
    try:
        return _check_params(params)
    except ConfigError as err:
        source = str(params.get("_path", "params.yaml"))
        if err.where and err.where.startswith(f"{source}: "):
            key = err.where.removeprefix(f"{source}: ")
            line = key_line(Path(source), key, {k: v for k, v in params.items() if k != "_path"})
            if line is not None:
                err.where = f"{source} line {line}: {key}"
        raise


def key_line(path: Path, key: str, data: dict[str, Any] | None = None) -> int | None:
    """The line of a dotted key path (`models.mmgcn.hidden`, `extract[1]`) in a YAML file: where the key is written,
    following `<<` merges to where an inherited value is written; for a missing key, its parent's line. None when
    the file cannot be read, or does not hold `data` (params edited in memory after loading)."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: the same nodes and marks, ~10x faster
        if data is not None and yaml.load(text, Loader=loader) != data:
            return None
        root = yaml.compose(text, Loader=loader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    found: list[int] = []

    def walk(node: Any, rest: str) -> bool:
        if not rest:
            return True
        if isinstance(node, yaml.SequenceNode) and rest.startswith("["):
            index, _, after = rest[1:].partition("]")
            if index.isdigit() and int(index) < len(node.value):
                item = node.value[int(index)]
                found.append(item.start_mark.line + 1)
                return walk(item, after.removeprefix("."))
            return False
        if not isinstance(node, yaml.MappingNode):
            return False
        merges = []
        for key_node, value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                merges.extend(value.value if isinstance(value, yaml.SequenceNode) else [value])
                continue
            name = str(key_node.value)
            if rest == name or rest.startswith(name + ".") or rest.startswith(name + "["):
                found.append(key_node.start_mark.line + 1)
                return walk(value, rest[len(name):].removeprefix("."))
        return any(walk(merged, rest) for merged in merges)

    walk(root, key)
    return found[-1] if found else None


def _check_params(params: dict[str, Any]) -> CheckedParams:
    source = str(params.get("_path", "params.yaml"))
    data = {k: v for k, v in params.items() if k != "_path"}
    typed: Params = parse(Params, data, "", source)
    corpora = data.get("corpora") or {}
    corpus_names: list[str | None] = [*corpora] or [None]

    extractor_configs: dict[tuple[str | None, str], Any] = {}
    for name, entry in (data.get("extractors") or {}).items():
        schema = EXTRACTOR_CONFIGS.get(entry.get("extractor") or name)
        if schema is None:
            continue
        base = entry.get("config") or {}
        parse(schema, base, f"extractors.{name}.config", source, partial=True)
        for corpus in corpus_names:
            override = ((corpora.get(corpus) or {}).get("extractors") or {}).get(name) if corpus else None
            key = f"extractors.{name}.config"
            if override and override.get("config"):
                key = f"corpora.{corpus}.extractors.{name}.config"
                parse(schema, override["config"], key, source, partial=True)
            config = merged(base, (override or {}).get("config") or {})
            extractor_configs[(corpus, name)] = parse(schema, config, key, source)
    for corpus, entry in corpora.items():
        for name in (entry.get("extractors") or {}):
            if name not in (data.get("extractors") or {}):
                raise ConfigError("corpus override of an extractor that `extractors` does not define",
                                  f"{source}: corpora.{corpus}.extractors.{name}",
                                  f"define extractors.{name} or remove the override")

    models: dict[tuple[str | None, str], ModelBase] = {}
    for name, entry in (data.get("models") or {}).items():
        parse(ModelBase, entry, f"models.{name}", source, partial=True)
    for corpus in corpus_names:
        overrides = (((corpora.get(corpus) or {}).get("train") or {}).get("models") or {}) if corpus else {}
        for name, override in overrides.items():
            if name not in (data.get("models") or {}):
                raise ConfigError(f"override of model '{name}', which `models` does not define",
                                  f"{source}: corpora.{corpus}.train.models.{name}",
                                  f"define models.{name} or remove the override")
            family = FAMILIES.get(str(data["models"][name].get("family")), ModelBase)
            parse(family, override, f"corpora.{corpus}.train.models.{name}", source, partial=True)
        for name in data.get("models") or {}:
            models[(corpus, name)] = parse(ModelBase, model_settings(data, name, corpus), f"models.{name}", source,
                                           locate=_model_key_locator(data, name, corpus))
    _check_references(data, source)

    sets: dict[str, DensefaceTrain] = {}
    denseface = data.get("denseface") or {}
    if denseface.get("train") is not None:
        parse(DensefaceTrain, denseface["train"], "denseface.train", source)
        for name, override in (denseface.get("sets") or {}).items():
            parse(DensefaceTrain, override, f"denseface.sets.{name}", source, partial=True)
            sets[name] = parse(DensefaceTrain, merged(denseface["train"], override), f"denseface.sets.{name}",
                               source)
    return CheckedParams(params=typed, extractor_configs=extractor_configs, models=models, denseface_sets=sets)


def _model_key_locator(data: dict[str, Any], model: str, corpus: str | None) -> Callable[[str], str]:
    """Where a key of a merged model setting was written: the corpus's model override, the model entry, the
    corpus's `train` or `train` (the order the train stage merges them in, last wins)."""
    corpus_train = ((data.get("corpora") or {}).get(corpus) or {}).get("train") or {} if corpus else {}
    blocks = [(f"corpora.{corpus}.train.models.{model}", (corpus_train.get("models") or {}).get(model) or {}),
              (f"models.{model}", (data.get("models") or {}).get(model) or {}),
              (f"corpora.{corpus}.train", {k: v for k, v in corpus_train.items() if k != "models"}),
              ("train", data.get("train") or {})]

    def locate(path: str) -> str:
        top = path.split(".", 1)[0].split("[", 1)[0]
        for prefix, block in blocks:
            if top in block:
                return f"{prefix}.{path}"
        return f"models.{model}.{path}" if path else f"models.{model}"

    return locate


def _check_references(data: dict[str, Any], source: str) -> None:
    """Names that point at other entries: the lists of extractors and models to run, `init_from`, `finetune_from`."""
    extractors, models = data.get("extractors") or {}, data.get("models") or {}
    for i, name in enumerate(data.get("extract") or []):
        if extractors and name not in extractors:
            raise ConfigError(f"extract names '{name}', which `extractors` does not define", f"{source}: extract[{i}]",
                              _closest(name, extractors))
    for list_key in ("train_models", "finetune_models"):
        for i, name in enumerate(data.get(list_key) or []):
            if name not in models:
                raise ConfigError(f"{list_key} names '{name}', which `models` does not define",
                                  f"{source}: {list_key}[{i}]", _closest(name, models))
    for i, name in enumerate(data.get("cross_models") or []):
        if name not in models:
            raise ConfigError(f"cross_models names '{name}', which `models` does not define",
                              f"{source}: cross_models[{i}]", _closest(name, models))
    corpora = data.get("corpora") or {}
    for name, cross in (data.get("cross_corpus") or {}).items():
        if name in corpora:
            raise ConfigError(f"cross_corpus '{name}' has the name of a corpus (both write splits/{name}.json)",
                              f"{source}: cross_corpus.{name}", "rename it, e.g. <source>_to_<target>")
        for corpus in [*(cross or {}).get("sources", []), (cross or {}).get("target")]:
            if corpus not in corpora:
                raise ConfigError(f"cross_corpus.{name} names corpus '{corpus}', which `corpora` does not define",
                                  f"{source}: cross_corpus.{name}", _closest(corpus, corpora))
    finetune_from = data.get("finetune_from")
    if finetune_from is not None and finetune_from not in models:
        raise ConfigError(f"finetune_from names '{finetune_from}', which `models` does not define",
                          f"{source}: finetune_from", _closest(finetune_from, models))
    for name, entry in models.items():
        init_from = (entry or {}).get("init_from")
        if init_from is not None and init_from not in models:
            raise ConfigError(f"init_from names '{init_from}', which `models` does not define",
                              f"{source}: models.{name}.init_from", _closest(init_from, models))


def _closest(name: str, known: Any) -> str:
    import difflib

    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1)
    return f"did you mean '{close[0]}'?" if close else f"known: {', '.join(sorted(map(str, known)))}"


def field_names(cls: type) -> list[str]:
    """The params keys of a section's dataclass (for documentation and tests)."""
    from pipeline.typed_config import key_of

    return [key_of(f) for f in dataclasses.fields(cls)]
