"""openSMILE audio features: ComParE_2016 frame-level descriptors (`compare`) and utterance functionals
(`compare_utterance`).

`compare` gives one row per 10 ms frame: the 65 ComParE_2016 low-level descriptors followed by their 65 deltas,
(T, 130), the audio input of MMIN (docs/models.md). The two halves live on two openSMILE data levels, `lld` and
`lld_de`, whose last rows carry repeated timestamps: the end-of-input flush frames are stamped with the time of
the last full frame, and the delta level runs two rows longer than the LLD level. Row k of each level is frame
k, so the levels are joined on the frame index (row position) and the join ends where the shorter level ends;
timestamps are never used. One openSMILE run reads both levels through a single sink (`lld;lld_de`, openSMILE's
own multi-level reader, which concatenates frame k of each level): the same numbers as two runs joined on the
frame index (tests/test_compare.py checks it) for half the work, since the delta level recomputes every LLD.

Optionally the frame sequence is downsampled in time by an integer factor with polyphase filtering
(`scipy.signal.resample_poly(x, 1, factor)`, MMIN's factor 10 gives a 100 ms hop); `frame_hop_s` follows.

`compare_utterance` gives one vector per utterance: ComParE_2016 functionals (6373) or eGeMAPSv02 (88).

A bad utterance never raises: missing or unreadable media, an empty segment, silence, an utterance too short
for `min_frames` frames, or non-finite output are returned as missing with a reason of `pipeline.missing`. Raw ComParE
values exceed the float16 range (spectral variance reaches millions), so features stay float32.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy.signal import resample_poly

from pipeline.extract import Extractor, ExtractorConfigError, library_versions, sha256_of_files
from pipeline.extract.audio import AudioLoadError, ffmpeg_version, load_audio
from pipeline.manifest import Utterance
from pipeline.missing import EXTRACTION_ERROR, NO_AUDIO, NON_FINITE, SILENT, TOO_SHORT
from pipeline.store import UtteranceFeatures

log = logging.getLogger(__name__)

LLD_HOP_S = 0.01  # the ComParE_2016 configuration's frame step; not a setting of ours
FRAME_LEVELS = "lld;lld_de"
UTTERANCE_FEATURE_SETS = ("ComParE_2016", "eGeMAPSv02")

INT16_MAX = 32767 / 32768  # opensmile scales by 32768 and casts to int16: 1.0 would wrap to -32768


@dataclass(frozen=True)
class AudioSettings:
    """The settings both openSMILE extractors share; built from the stage's config dict, checked up front."""

    sample_rate: int
    min_frames: int
    silence_dbfs: float
    decode_timeout_s: float
    batch_size: int


@dataclass(frozen=True)
class FrameSettings(AudioSettings):
    downsample: int


@dataclass(frozen=True)
class UtteranceSettings(AudioSettings):
    feature_set: str


def _settings(cls: type, config: dict[str, Any], extractor: str) -> Any:
    fields = cls.__dataclass_fields__
    unknown = sorted(set(config) - set(fields))
    if unknown:
        raise ExtractorConfigError(f"{extractor}: unknown config keys {unknown}; expected {sorted(fields)}")
    absent = sorted(set(fields) - set(config))
    if absent:
        raise ExtractorConfigError(f"{extractor}: config lacks {absent}")
    values = dict(config)
    for key in ("sample_rate", "min_frames", "batch_size", "downsample"):
        if key in values:
            value = values[key]
            if isinstance(value, bool) or not isinstance(value, int):
                raise ExtractorConfigError(f"{extractor}: {key} must be an integer, got {value!r}")
    for key in ("silence_dbfs", "decode_timeout_s"):
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ExtractorConfigError(f"{extractor}: {key} must be a number, got {value!r}")
        values[key] = float(value)
    if values["sample_rate"] < 8000:
        raise ExtractorConfigError(f"{extractor}: sample_rate must be >= 8000 Hz, got {values['sample_rate']}")
    if values["min_frames"] < 0:
        raise ExtractorConfigError(f"{extractor}: min_frames must be >= 0, got {values['min_frames']}")
    if values["batch_size"] < 1:
        raise ExtractorConfigError(f"{extractor}: batch_size must be >= 1, got {values['batch_size']}")
    if values["decode_timeout_s"] <= 0:
        raise ExtractorConfigError(f"{extractor}: decode_timeout_s must be positive")
    if values["silence_dbfs"] > 0:
        raise ExtractorConfigError(f"{extractor}: silence_dbfs is a level in dBFS, <= 0; got {values['silence_dbfs']}")
    if values.get("downsample", 1) < 1:
        raise ExtractorConfigError(f"{extractor}: downsample must be >= 1, got {values['downsample']}")
    if "feature_set" in values and values["feature_set"] not in UTTERANCE_FEATURE_SETS:
        raise ExtractorConfigError(f"{extractor}: feature_set must be one of {UTTERANCE_FEATURE_SETS}, "
                                   f"got {values['feature_set']!r}")
    return cls(**values)


def _smile(feature_set: str, feature_level: str) -> Any:
    import opensmile

    level = getattr(opensmile.FeatureLevel, feature_level, feature_level)
    return opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, feature_set), feature_level=level)


def _config_files(smile: Any) -> list[Path]:
    """The openSMILE configuration the features come from: the feature set's directory plus the shared includes."""
    conf = Path(smile.config_path)
    shared = conf.parent.parent / "shared"
    files = sorted(p for p in conf.parent.iterdir() if p.is_file())
    files += sorted(p for p in shared.iterdir() if p.is_file()) if shared.is_dir() else []
    return files


class _OpenSmileExtractor(Extractor):
    """Loading, the per-utterance checks and provenance shared by the two openSMILE extractors."""

    modality: ClassVar[str] = "audio"
    settings_class: ClassVar[type]

    def __init__(self, config: dict[str, Any], corpus_root: Path) -> None:
        super().__init__(config, corpus_root)
        self.settings = _settings(self.settings_class, self.config, self.name)
        self.config = asdict(self.settings)
        # Built once here and pickled to the workers with the extractor: a Smile unpickles in microseconds,
        # while building one costs a scan of every installed distribution (audobject) in each new process.
        self._smile: Any = self._make_smile()
        self.feature_names: list[str] = list(self._smile.feature_names)
        self.config_sha256 = sha256_of_files(_config_files(self._smile))

    @property
    def feature_set(self) -> str:
        raise NotImplementedError

    @property
    def feature_level(self) -> str:
        raise NotImplementedError

    def _make_smile(self) -> Any:
        return _smile(self.feature_set, self.feature_level)

    @property
    def dim(self) -> int:
        return len(self.feature_names)

    def setup(self) -> None:
        """The Smile object travels with the extractor; rebuild it only if a pickle came without it."""
        if getattr(self, "_smile", None) is None:
            self._smile = self._make_smile()

    def _provenance(self) -> dict[str, Any]:
        return {"feature_names": self.feature_names, "sample_rate": self.settings.sample_rate,
                "model": f"opensmile {self.feature_set}", "model_sha256": self.config_sha256,
                "library_versions": {**library_versions("opensmile", "numpy", "scipy", "soundfile",
                                                        "imageio-ffmpeg"), "ffmpeg": ffmpeg_version()}}

    def process(self, utts: Sequence[Utterance]) -> list[UtteranceFeatures]:
        self.setup()
        return [self.process_one(u) for u in utts]

    def process_one(self, utt: Utterance) -> UtteranceFeatures:
        """Features of one utterance, or a missing record with its reason; never raises for one bad utterance.

        Anything unforeseen (a decoder or openSMILE error on odd media) is logged with its traceback and counted
        as `extraction_error`, so it shows in the stage summary and trips the failure threshold if it repeats.
        """
        try:
            signal_or_failure = self._load(utt)
            if isinstance(signal_or_failure, UtteranceFeatures):
                return signal_or_failure
            return self._features(utt, signal_or_failure)
        except Exception:
            log.exception("%s: %s extraction failed", utt.utt_id, self.name)
            return UtteranceFeatures.missing(EXTRACTION_ERROR, self.dim)

    def _load(self, utt: Utterance) -> np.ndarray | UtteranceFeatures:
        if utt.audio is None:
            return UtteranceFeatures.missing(NO_AUDIO, self.dim)
        path = self.corpus_root / utt.audio.path
        try:
            signal = load_audio(path, utt.audio.start, utt.audio.end, sample_rate=self.settings.sample_rate,
                                decode_timeout_s=self.settings.decode_timeout_s)
        except AudioLoadError as err:
            log.warning("%s: %s", utt.utt_id, err)
            return UtteranceFeatures.missing(err.reason, self.dim)
        peak = float(np.max(np.abs(signal)))
        if peak <= 0 or 20 * np.log10(peak) < self.settings.silence_dbfs:
            log.warning("%s: %s: silent (peak below %.1f dBFS)", utt.utt_id, path, self.settings.silence_dbfs)
            return UtteranceFeatures.missing(SILENT, self.dim)
        return np.clip(signal, -1.0, INT16_MAX)

    def _run(self, signal: np.ndarray) -> np.ndarray:
        """openSMILE on a signal; zero rows when the signal is too short to give any frame."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Segment too short")
            frame = self._smile.process_signal(signal, self.settings.sample_rate)
        values = frame.to_numpy(dtype=np.float32)
        if len(values) == 1 and np.isnan(values).all():  # opensmile's placeholder when no frame came out
            return values[:0]
        return values

    def _features(self, utt: Utterance, signal: np.ndarray) -> UtteranceFeatures:
        raise NotImplementedError


class CompareExtractor(_OpenSmileExtractor):
    """ComParE_2016 LLDs and their deltas, (T, 130) at a 10 ms hop, optionally downsampled in time."""

    name: ClassVar[str] = "compare"
    version: ClassVar[str] = "1"
    settings_class: ClassVar[type] = FrameSettings

    feature_set: ClassVar[str] = "ComParE_2016"
    feature_level: ClassVar[str] = FRAME_LEVELS

    @property
    def frame_hop_s(self) -> float:
        return LLD_HOP_S * self.settings.downsample

    def describe(self) -> dict[str, Any]:
        return {**self._provenance(), "frame_hop_s": self.frame_hop_s, "lld_hop_s": LLD_HOP_S,
                "downsample": self.settings.downsample, "feature_level": FRAME_LEVELS}

    def _features(self, utt: Utterance, signal: np.ndarray) -> UtteranceFeatures:
        frames = self._run(signal)
        if len(frames) <= self.settings.min_frames:
            log.warning("%s: too short (%d frames <= min_frames %d)", utt.utt_id, len(frames),
                        self.settings.min_frames)
            return UtteranceFeatures.missing(TOO_SHORT, self.dim)
        if not np.isfinite(frames).all():
            log.warning("%s: openSMILE gave non-finite values", utt.utt_id)
            return UtteranceFeatures.missing(NON_FINITE, self.dim)
        return UtteranceFeatures(downsample_frames(frames, self.settings.downsample), True)


def downsample_frames(frames: np.ndarray, factor: int) -> np.ndarray:
    """Polyphase downsampling along time by `factor` (MMIN: 10), ceil(T / factor) rows, float32."""
    if factor == 1:
        return np.ascontiguousarray(frames, dtype=np.float32)
    return resample_poly(frames.astype(np.float64), 1, factor, axis=0).astype(np.float32)


class CompareUtteranceExtractor(_OpenSmileExtractor):
    """One functionals vector per utterance: ComParE_2016 (6373) or eGeMAPSv02 (88), stored as (1, D).

    `min_frames` counts 10 ms steps of audio here (the functionals do not expose their frames).
    """

    name: ClassVar[str] = "compare_utterance"
    version: ClassVar[str] = "1"
    settings_class: ClassVar[type] = UtteranceSettings

    feature_level: ClassVar[str] = "Functionals"

    @property
    def feature_set(self) -> str:
        return self.settings.feature_set

    def describe(self) -> dict[str, Any]:
        return {**self._provenance(), "feature_set": self.settings.feature_set, "feature_level": self.feature_level}

    def _features(self, utt: Utterance, signal: np.ndarray) -> UtteranceFeatures:
        steps = len(signal) // int(round(LLD_HOP_S * self.settings.sample_rate))
        if steps <= self.settings.min_frames:
            log.warning("%s: too short (%d steps of 10 ms <= min_frames %d)", utt.utt_id, steps,
                        self.settings.min_frames)
            return UtteranceFeatures.missing(TOO_SHORT, self.dim)
        values = self._run(signal)
        if len(values) != 1:
            return UtteranceFeatures.missing(TOO_SHORT, self.dim)
        if not np.isfinite(values).all():
            log.warning("%s: openSMILE gave non-finite values", utt.utt_id)
            return UtteranceFeatures.missing(NON_FINITE, self.dim)
        return UtteranceFeatures(values, True)
