"""Speech features from any transformers speech encoder: wav2vec 2.0, HuBERT, WavLM, Data2VecAudio, UniSpeech(-SAT),
SEW(-D), Wav2Vec2-Conformer, and Whisper's encoder (`hf_audio` store).

The model comes from a local directory, the local Hugging Face cache (never downloaded) or `python-package:<module>`
(`model_files.py`); its `preprocessor_config.json` says the sampling rate, whether the waveform is normalised to
zero mean and unit variance (`do_normalize`: done here over the whole utterance, before chunking) and whether the
model takes an attention mask (`return_attention_mask`). Models whose padded rows differ from unpadded ones
(group-normalised convolutions as in wav2vec2-base, Data2VecAudio's stacked positional convolutions; see
`PADDING_INVARIANT_TYPES`) run only equal-length chunks together, so their rows never depend on the batching.

What one utterance gives (`layer` picks among the model's `hidden_states`: 0 is the transformer's input, the
projected convolutional features; L is the last layer; `last` is the model's output, which in pre-LN models, the
"stable layer norm" large checkpoints, is hidden state L after the final layer norm):
- `level: frame`: (T, D), one row per encoder frame (20 ms for all of the above), `layer` = `last`,
  `mean_last_<k>` or an index (negative counts from the end);
- `level: utterance`: (1, D), the mean over the frames; with `layer: all`, (L + 1, D): each hidden state's
  utterance mean as one row, row 0 the transformer's input, for SUPERB-style learned weighted sums (the store's
  `row_axis` attribute says `layer`).

Long utterances run in overlapping chunks of `chunk_s` seconds, `overlap_s` shared by neighbours; the stitched
sequence keeps from each chunk the frames nearest its centre (a chunk's first and last overlap_s / 2 are left to
its neighbours), so every frame keeps at least overlap_s / 2 of context on each side. Whisper's encoder always sees
30 s (its input is padded to 30 s as in training), so `chunk_s` is at most 30 for it.

Speed: `work_units` sorts a shard by duration and groups it with the text extractor's `plan_batches`; inside a
unit, the chunks are sorted by length and batched again within `sample_budget` padded samples per forward pass.
Half precision on a GPU (`dtype: auto`). Batched rows equal one-by-one rows in float32 (to 1e-5), so the store
does not depend on the batching.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from pipeline import missing
from pipeline.extract import Extractor, ExtractorConfigError, library_versions
from pipeline.extract.audio import AudioLoadError, ffmpeg_version, load_audio
from pipeline.extract.compute import compute_facts
from pipeline.extract.inference import pick_device, pick_dtype
from pipeline.extract.model_files import PREPROCESSOR_FILES, ModelFiles, resolve_model
from pipeline.extract.text_encoder import plan_batches
from pipeline.manifest import Utterance
from pipeline.store import UtteranceFeatures

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "model": "microsoft/wavlm-large",  # hub id (local HF cache only), local directory, or python-package:<module>
    "revision": None,  # HF revision (commit hash, branch or tag) to take from the cache
    "layer": "last",  # last | mean_last_<k> | <index> into hidden_states (0 = transformer input) | all
    "level": "frame",  # frame: (T, D) | utterance: (1, D), the mean over frames ((L + 1, D) with layer: all)
    "chunk_s": 20.0,  # longer utterances run in chunks of this many seconds (at most 30 for Whisper)
    "overlap_s": 2.0,  # seconds neighbouring chunks share; each keeps its centre frames
    "sample_budget": 960_000,  # padded samples per forward pass (chunks x longest chunk); 60 s at 16 kHz
    "batch_overhead_s": 0.5,  # a forward pass's fixed cost in seconds of audio (planner: padding vs passes)
    "dtype": "auto",  # auto (float16 on a GPU, float32 on the CPU) | float32 | float16 | bfloat16
    "device": "auto",  # auto | cpu | cuda | cuda:<n>
    "min_duration_s": 0.1,  # shorter audio -> missing "too_short"
    "silence_dbfs": -90.0,  # peak below this -> missing "silent"
    "decode_timeout_s": 120.0,  # per-utterance ffmpeg limit
}
SPEECH_MODEL_TYPES = ("wav2vec2", "wav2vec2-conformer", "hubert", "wavlm", "data2vec-audio", "unispeech",
                      "unispeech-sat", "sew", "sew-d", "whisper")
# With an attention mask, a padded row equals the unpadded one (tests/test_hf_audio.py); other models (stacked
# positional convolutions as in Data2VecAudio, conformer convolutions, group norm) see the padding at the end of a
# shorter chunk, so they only batch chunks of equal length: the same rows, fewer shared passes.
PADDING_INVARIANT_TYPES = ("wav2vec2", "hubert", "wavlm")
LEVELS = ("frame", "utterance")
_LAYER = re.compile(r"^(last|all|mean_last_(?P<k>[1-9][0-9]*)|(?P<index>-?[0-9]+))$")
WHISPER_WINDOW_S = 30.0


@dataclass(frozen=True)
class Chunk:
    """One forward-pass input: `samples` of utterance `utt` from `start`, keeping frames [keep_from, keep_to)."""

    utt: int
    samples: np.ndarray
    keep_from: int
    keep_to: int | None  # None: to the chunk's last frame


def chunk_spans(n_samples: int, chunk: int, overlap: int, stride: int) -> list[tuple[int, int, int, int | None]]:
    """(start, end, keep_from, keep_to) per chunk: samples [start, end), and the chunk's frames that are kept.

    `chunk` and `overlap` are whole multiples of the frame `stride` (samples per frame), so every chunk starts on a
    frame of the unchunked sequence and chunk k's local frame f is global frame start/stride + f. A chunk keeps
    the frames whose global index lies in [its start + overlap/2, the next chunk's start + overlap/2), the first
    from 0 and the last to its end: together exactly the unchunked frames, each taken from the chunk it is most
    central in. One chunk when the utterance fits."""
    if n_samples <= chunk:
        return [(0, n_samples, 0, None)]
    hop = chunk - overlap
    half = overlap // 2 // stride  # frames left to the neighbour at each inner edge
    starts = list(range(0, n_samples - overlap, hop))
    while len(starts) > 1 and starts[-1] + overlap >= n_samples:  # a last chunk inside the overlap adds nothing
        starts.pop()
    spans = []
    for k, start in enumerate(starts):
        last = k == len(starts) - 1
        end = n_samples if last else start + chunk
        keep_from = 0 if k == 0 else half
        keep_to = None if last else hop // stride + half
        spans.append((start, end, keep_from, keep_to))
    return spans


def conv_frames(n_samples: int, kernels: Sequence[int], strides: Sequence[int]) -> int:
    """Frames a wav2vec2-style convolutional feature encoder gives for `n_samples` (no padding, floor)."""
    n = n_samples
    for kernel, stride in zip(kernels, strides, strict=True):
        n = (n - kernel) // stride + 1 if n >= kernel else 0
    return max(n, 0)


class HfAudioExtractor(Extractor):
    """Frame or utterance embeddings from a transformers speech encoder."""

    name: ClassVar[str] = "hf_audio"
    version: ClassVar[str] = "1"
    modality: ClassVar[str] = "audio"

    def __init__(self, config: dict[str, Any], corpus_root: Any = ".") -> None:
        super().__init__(self.with_defaults(config, DEFAULTS), corpus_root)
        self._check_values()
        self.files: ModelFiles = resolve_model(self.config["model"], self.config["revision"])
        self.files.require(PREPROCESSOR_FILES, "the feature extractor's settings: sampling rate, normalisation")
        self._load_configs()
        self.layer_choice = self._parse_layer(self.config["layer"])
        self.device = pick_device(self.config["device"], self.name)
        self.dtype_name = pick_dtype(self.config["dtype"], self.device, self.name)
        self._model: Any = None
        self._identity: dict[str, Any] | None = None

    # --- configuration ------------------------------------------------------------------------------------------
    def _check_values(self) -> None:
        cfg = self.config
        for key in ("chunk_s", "overlap_s", "batch_overhead_s", "min_duration_s", "decode_timeout_s", "silence_dbfs"):
            if isinstance(cfg[key], bool) or not isinstance(cfg[key], (int, float)):
                raise ExtractorConfigError(f"{self.name}: {key} must be a number, got {cfg[key]!r}")
        if not cfg["chunk_s"] > 0 or not 0 <= cfg["overlap_s"] < cfg["chunk_s"]:
            raise ExtractorConfigError(f"{self.name}: need chunk_s > 0 and 0 <= overlap_s < chunk_s, got chunk_s "
                                       f"{cfg['chunk_s']!r}, overlap_s {cfg['overlap_s']!r}")
        if isinstance(cfg["sample_budget"], bool) or not isinstance(cfg["sample_budget"], int) \
                or cfg["sample_budget"] < 1:
            raise ExtractorConfigError(f"{self.name}: sample_budget must be a positive integer, "
                                       f"got {cfg['sample_budget']!r}")
        if cfg["level"] not in LEVELS:
            raise ExtractorConfigError(f"{self.name}: level must be one of {LEVELS}, got {cfg['level']!r}")
        if cfg["batch_overhead_s"] < 0 or cfg["min_duration_s"] < 0 or cfg["decode_timeout_s"] <= 0 \
                or cfg["silence_dbfs"] > 0:
            raise ExtractorConfigError(f"{self.name}: batch_overhead_s and min_duration_s must be >= 0, "
                                       "decode_timeout_s > 0, silence_dbfs <= 0 (a level in dBFS)")

    def _load_configs(self) -> None:
        """The model's config and preprocessor: kind, sampling rate, frame stride, layers; checks chunk sizes."""
        from transformers import AutoConfig, AutoFeatureExtractor

        self.model_config = AutoConfig.from_pretrained(self.files.path)
        model_type = self.model_config.model_type
        if model_type not in SPEECH_MODEL_TYPES:
            raise ExtractorConfigError(f"{self.name}: {self.files.spec!r} is a {model_type!r} model, not one of the "
                                       f"speech encoders {SPEECH_MODEL_TYPES}")
        self.whisper = model_type == "whisper"
        self.preprocessor = AutoFeatureExtractor.from_pretrained(self.files.path)
        self.sample_rate = int(self.preprocessor.sampling_rate)
        if self.whisper:
            self.stride = 2 * int(self.preprocessor.hop_length)  # mel hop, then the encoder's stride-2 convolution
            self.n_layers = int(self.model_config.encoder_layers)
            self.normalize = False  # log-mel input: the feature extractor normalises it
            self.masked = False
            self.pad_invariant = True  # every chunk is padded to the same 30 s window anyway
            if self.config["chunk_s"] > WHISPER_WINDOW_S:
                raise ExtractorConfigError(f"{self.name}: Whisper's encoder takes at most {WHISPER_WINDOW_S:g} s; "
                                           f"chunk_s is {self.config['chunk_s']}")
        else:
            self.stride = math.prod(self.model_config.conv_stride)
            self.n_layers = int(self.model_config.num_hidden_layers)
            self.normalize = bool(getattr(self.preprocessor, "do_normalize", False))
            self.masked = bool(getattr(self.preprocessor, "return_attention_mask", False))
            self.pad_invariant = self.masked and model_type in PADDING_INVARIANT_TYPES
        # chunk and overlap in whole frames, so that chunks start on frames of the unchunked sequence
        self.chunk = max(1, round(self.config["chunk_s"] * self.sample_rate / self.stride)) * self.stride
        self.overlap = round(self.config["overlap_s"] * self.sample_rate / self.stride) * self.stride
        if self.overlap >= self.chunk:
            raise ExtractorConfigError(f"{self.name}: overlap_s rounds to the whole chunk ({self.stride} samples a "
                                       "frame); lower it")
        if not self.whisper and self.overlap < 2 * self.stride:  # a frame's convolution spans 1.25 frames of audio
            raise ExtractorConfigError(f"{self.name}: overlap_s must be at least two frames "
                                       f"({2 * self.stride / self.sample_rate:g} s) so that chunks meet on whole "
                                       f"frames; got {self.config['overlap_s']}")

    def _parse_layer(self, layer: Any) -> tuple[str, int]:
        """("last", 1) | ("mean", k) | ("index", i >= 0) | ("all", L + 1)."""
        match = _LAYER.match(str(layer))
        states = self.n_layers + 1
        if not match:
            raise ExtractorConfigError(f"{self.name}: layer must be last, all, mean_last_<k> or an index into the "
                                       f"{states} hidden states, got {layer!r}")
        if match.group("index") is not None:
            index = int(match.group("index"))
            if not -states <= index < states:
                raise ExtractorConfigError(f"{self.name}: layer {index} is out of range: the model has {states} "
                                           f"hidden states (0..{states - 1}, or -{states}..-1)")
            return ("index", index % states)
        if match.group("k") is not None:
            k = int(match.group("k"))
            if k > states:
                raise ExtractorConfigError(f"{self.name}: layer {layer!r} averages more than the model's {states} "
                                           "hidden states")
            return ("mean", k)
        if layer == "all":
            if self.config["level"] != "utterance":
                raise ExtractorConfigError(f"{self.name}: layer: all keeps one utterance mean per hidden state "
                                           "((L + 1, D) rows); set level: utterance")
            return ("all", states)
        return ("last", 1)

    @property
    def dim(self) -> int:
        return int(self.model_config.d_model if self.whisper else self.model_config.hidden_size)

    @property
    def frame_hop_s(self) -> float | None:
        return self.stride / self.sample_rate if self.config["level"] == "frame" else None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_model"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """On another host (a Ray worker) the model may live elsewhere: find it again by its name, same revision."""
        self.__dict__.update(state)
        self.files = self.files.found_again(self.config["model"], self.config["revision"])

    def describe(self) -> dict[str, Any]:
        if self._identity is None:
            kind, count = self.layer_choice
            self._identity = {
                **self.files.identity(self.model_config.model_type),
                "preprocessor_sha256": self.files.preprocessor_sha256(),
                "hidden_size": self.dim,
                "num_hidden_layers": self.n_layers,
                "layer": str(self.config["layer"]),
                "layers_averaged": count if kind in ("mean", "last") else 1,
                "row_axis": "layer" if kind == "all" else ("time" if self.config["level"] == "frame" else "utterance"),
                "sample_rate": self.sample_rate,
                "waveform_normalized": self.normalize,
                "attention_mask": self.masked,
                "padded_batches": self.pad_invariant,
                "chunk_samples": self.chunk,
                "overlap_samples": self.overlap,
                "compute_device": self.device.split(":")[0],
                "compute_dtype": self.dtype_name,
                "feature_names": [f"{self.name}_{i}" for i in range(self.dim)],
                "frame_hop_s": self.frame_hop_s,
                "library_versions": {**library_versions("torch", "transformers", "numpy", "scipy", "soundfile",
                                                        "imageio-ffmpeg"), "ffmpeg": ffmpeg_version()},
                "compute": compute_facts(self.device),
            }
        return self._identity

    # --- planning -----------------------------------------------------------------------------------------------
    def _duration_s(self, utt: Utterance) -> float:
        """The segment's length as the manifest gives it, else the file's (soundfile), else one chunk (unknown)."""
        seg = utt.audio
        if seg is None:
            return 0.0
        if seg.end is not None:
            return max(0.0, seg.end - (seg.start or 0.0))
        try:
            import soundfile as sf

            return max(0.0, sf.info(str(self.corpus_root / seg.path)).duration - (seg.start or 0.0))
        except Exception:  # noqa: BLE001 - any unreadable file is planned as one chunk and reported by process()
            return self.chunk / self.sample_rate

    def work_units(self, utts: Sequence[Utterance]) -> list[list[int]]:
        """Duration-sorted groups of utterances, planned like the text extractor's batches (`plan_batches`) on
        their samples capped at one chunk, within `sample_budget`; `process` batches the chunks again exactly."""
        lengths = [min(self.chunk, round(self._duration_s(u) * self.sample_rate)) for u in utts]
        order = sorted(range(len(utts)), key=lambda j: (lengths[j], j))
        bounds = plan_batches([max(1, lengths[i]) for i in order], self.config["sample_budget"],
                              self._overhead_samples())
        return [order[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]

    def _overhead_samples(self) -> int:
        return round(self.config["batch_overhead_s"] * self.sample_rate)

    def chunk_batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Indices of chunks (of these lengths) per forward pass: length-sorted, within `sample_budget`; a model
        whose rows padding would change (not `PADDING_INVARIANT_TYPES` with a mask) only batches equal lengths."""
        order = sorted(range(len(lengths)), key=lambda j: (lengths[j], j))
        if self.whisper:  # every chunk is padded to 30 s: the budget counts whole windows
            window = round(WHISPER_WINDOW_S * self.sample_rate)
            runs = [order]
            sizes = [[window] * len(order)]
        else:
            runs = [order] if self.pad_invariant else [[j for j in order if lengths[j] == n]
                                                        for n in sorted(set(lengths))]
            sizes = [[lengths[j] for j in run] for run in runs]
        batches = []
        for run, size in zip(runs, sizes, strict=True):
            bounds = plan_batches(size, self.config["sample_budget"], self._overhead_samples())
            batches += [run[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
        return batches

    # --- model --------------------------------------------------------------------------------------------------
    def setup(self) -> None:
        if self._model is not None:
            return
        import torch

        dtype = getattr(torch, self.dtype_name)
        if self.whisper:  # the encoder alone: the audio-classification head class holds no decoder
            from transformers import WhisperForAudioClassification
            from transformers.utils import logging as hf_logging

            verbosity = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()  # the unused decoder and the untrained head are expected
            try:
                model = WhisperForAudioClassification.from_pretrained(self.files.path, dtype=dtype).encoder
            finally:
                hf_logging.set_verbosity(verbosity)
        else:
            from transformers import AutoModel

            model = AutoModel.from_pretrained(self.files.path, dtype=dtype)
        self._model = model.to(self.device).eval()

    def valid_frames(self, n_samples: int) -> int:
        """Encoder frames that `n_samples` of audio give (Whisper: the frames of its 30 s window the audio reaches)."""
        if self.whisper:
            return -(-n_samples // self.stride)
        return conv_frames(n_samples, self.model_config.conv_kernel, self.model_config.conv_stride)

    def _inputs(self, signals: list[np.ndarray]) -> dict[str, Any]:
        import torch

        dtype = getattr(torch, self.dtype_name)
        if self.whisper:
            feats = self.preprocessor(signals, sampling_rate=self.sample_rate, return_tensors="np")["input_features"]
            return {"input_features": torch.from_numpy(np.asarray(feats, np.float32)).to(self.device, dtype)}
        longest = max(len(s) for s in signals)
        values = np.full((len(signals), longest), float(self.preprocessor.padding_value), np.float32)
        mask = np.zeros((len(signals), longest), np.int64)
        for b, signal in enumerate(signals):
            values[b, :len(signal)] = signal
            mask[b, :len(signal)] = 1
        inputs = {"input_values": torch.from_numpy(values).to(self.device, dtype)}
        if self.masked:
            inputs["attention_mask"] = torch.from_numpy(mask).to(self.device)
        return inputs

    def forward(self, chunks: list[Chunk]) -> list[np.ndarray]:
        """Each chunk's kept frames of the chosen hidden states, float32 (S, T_kept, D); S = 1 unless `all`."""
        import torch

        kind, count = self.layer_choice
        with torch.inference_mode():
            out = self._model(**self._inputs([c.samples for c in chunks]), output_hidden_states=kind != "last")
            if kind == "last":
                states = out.last_hidden_state[None]
            elif kind == "index":
                states = out.hidden_states[count][None]
            elif kind == "mean":
                states = torch.stack(out.hidden_states[-count:]).float().mean(0, keepdim=True)
            else:
                states = torch.stack(out.hidden_states)
            states = states.float().cpu().numpy()
        result = []
        for b, chunk in enumerate(chunks):
            frames = self.valid_frames(len(chunk.samples))
            keep_to = frames if chunk.keep_to is None else min(chunk.keep_to, frames)
            result.append(np.ascontiguousarray(states[:, b, chunk.keep_from:keep_to]))
        return result

    # --- utterances ---------------------------------------------------------------------------------------------
    def _load(self, utt: Utterance) -> np.ndarray | UtteranceFeatures:
        """The utterance's samples (normalised if the preprocessor says so), or why it is missing."""
        if utt.audio is None:
            return UtteranceFeatures.missing(missing.NO_AUDIO, self.dim)
        path = self.corpus_root / utt.audio.path
        try:
            signal = load_audio(path, utt.audio.start, utt.audio.end, sample_rate=self.sample_rate,
                                decode_timeout_s=float(self.config["decode_timeout_s"]))
        except AudioLoadError as err:
            log.warning("%s: %s", utt.utt_id, err)
            return UtteranceFeatures.missing(err.reason, self.dim)
        peak = float(np.max(np.abs(signal)))
        if peak <= 0 or 20 * np.log10(peak) < self.config["silence_dbfs"]:
            log.warning("%s: %s: silent (peak below %.1f dBFS)", utt.utt_id, path, self.config["silence_dbfs"])
            return UtteranceFeatures.missing(missing.SILENT, self.dim)
        shortest = max(self.config["min_duration_s"] * self.sample_rate, 1)
        if len(signal) < shortest or self.valid_frames(len(signal)) < 1:
            log.warning("%s: too short for %s (%d samples)", utt.utt_id, self.name, len(signal))
            return UtteranceFeatures.missing(missing.TOO_SHORT, self.dim)
        if self.normalize:  # Wav2Vec2FeatureExtractor's zero_mean_unit_var_norm, over the whole utterance
            signal = ((signal - signal.mean()) / np.sqrt(signal.var() + 1e-7)).astype(np.float32)
        return signal

    def chunks_of(self, index: int, signal: np.ndarray) -> list[Chunk]:
        return [Chunk(index, signal[start:end], keep_from, keep_to)
                for start, end, keep_from, keep_to in chunk_spans(len(signal), self.chunk, self.overlap, self.stride)]

    def process(self, utts: Sequence[Utterance]) -> list[UtteranceFeatures]:
        self.setup()
        results: list[UtteranceFeatures | None] = [None] * len(utts)
        chunks: list[Chunk] = []
        for i, utt in enumerate(utts):
            loaded = self._load(utt)
            if isinstance(loaded, UtteranceFeatures):
                results[i] = loaded
            else:
                chunks += self.chunks_of(i, loaded)
        kept: list[np.ndarray | None] = [None] * len(chunks)
        for batch in self.chunk_batches([len(c.samples) for c in chunks]):
            for j, frames in zip(batch, self.forward([chunks[j] for j in batch]), strict=True):
                kept[j] = frames
        for i in sorted({c.utt for c in chunks}):
            parts = [kept[j] for j, c in enumerate(chunks) if c.utt == i]
            results[i] = self._pooled(utts[i], np.concatenate(parts, axis=1))
        return [r for r in results if r is not None]

    def _pooled(self, utt: Utterance, states: np.ndarray) -> UtteranceFeatures:
        """(S, T, D) stitched states -> the utterance's rows: (T, D) frames, (1, D) mean, or (S, D) with `all`."""
        if not np.isfinite(states).all():
            log.warning("%s: %s gave non-finite values (try dtype: float32 or bfloat16)", utt.utt_id, self.name)
            return UtteranceFeatures.missing(missing.NON_FINITE, self.dim)
        if self.config["level"] == "frame":
            rows = states[0]
        else:
            rows = states.astype(np.float64).mean(axis=1)
        return UtteranceFeatures(np.ascontiguousarray(rows, dtype=np.float32), True)
