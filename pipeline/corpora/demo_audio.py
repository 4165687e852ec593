"""The demo's voice: speech-like audio whose pitch level and range, energy, tempo and voice quality depend on the
emotion (scaled by the utterance's voice intensity) and on the speaker."""

from __future__ import annotations

import math

import numpy as np
from scipy import signal

from pipeline.corpora.demo_plan import Plan

# Voice per emotion at full intensity, relative to a neutral voice (pitch ratio, pitch excursion in semitones,
# syllable-rate ratio, energy ratio, glottal low-pass pole (lower = brighter), breathiness, contour slope).
VOICES: dict[str, dict[str, float]] = {
    "neu": {"pitch": 1.0, "range": 2.0, "rate": 1.0, "energy": 1.0, "pole": 0.90, "breath": 0.04, "slope": -1.0},
    "ang": {"pitch": 1.22, "range": 5.0, "rate": 1.25, "energy": 2.0, "pole": 0.70, "breath": 0.02, "slope": 0.0},
    "hap": {"pitch": 1.30, "range": 7.0, "rate": 1.15, "energy": 1.35, "pole": 0.85, "breath": 0.03, "slope": 2.0},
    "sad": {"pitch": 0.88, "range": 1.0, "rate": 0.72, "energy": 0.55, "pole": 0.95, "breath": 0.12, "slope": -2.5},
}
# Prosody signals arousal far more than valence: the emotions of one arousal level share most of their voice.
AROUSAL_PAIRS = {"ang": ("ang", "hap"), "hap": ("ang", "hap"), "neu": ("neu", "sad"), "sad": ("neu", "sad")}
VOWELS = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410),
          (440, 1020, 2240), (660, 1720, 2410)]


def _resonator(freq: float, bandwidth: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    r = math.exp(-math.pi * bandwidth / sr)
    theta = 2 * math.pi * freq / sr
    a = np.array([1.0, -2 * r * math.cos(theta), r * r])
    return np.array([a.sum()]), a  # unit gain at DC


def voice_profile(emotion: str, valence_cue: float) -> dict[str, float]:
    """The emotion's voice at full intensity: its arousal pair's mean voice plus `valence_cue` x its own difference
    from that mean (1: the emotion's own voice; 0: angry and happy, neutral and sad sound alike)."""
    if valence_cue == 1.0:
        return VOICES[emotion]
    pair = [VOICES[e] for e in AROUSAL_PAIRS[emotion]]
    mean = {key: sum(v[key] for v in pair) / len(pair) for key in VOICES[emotion]}
    return {key: mean[key] + valence_cue * (VOICES[emotion][key] - mean[key]) for key in mean}


def shifted(voice: dict[str, float], shift: dict[str, float] | None) -> dict[str, float]:
    """A voice with its pitch and energy baselines multiplied by `shift`'s ratios (another culture's voice)."""
    return {**voice, **{key: voice[key] * ratio for key, ratio in (shift or {}).items()}} if shift else voice


def synthesize_speech(plan: Plan, classes: list[str], sr: int, valence_cue: float = 1.0,
                      voice_shift: dict[str, dict[str, float]] | None = None) -> np.ndarray:
    """A speech-like utterance: syllables of voiced vowels with fricative onsets, pauses between words.
    `voice_shift`: per emotion, ratios on its pitch and energy baselines (neutral's shift moves every voice's
    starting point)."""
    rng = np.random.default_rng([*plan.seed, 1])
    shift = voice_shift or {}
    neutral = shifted(VOICES["neu"], shift.get("neu"))
    target = shifted(voice_profile(plan.emotion, valence_cue), shift.get(plan.emotion))
    k = plan.audio_intensity
    voice = {key: neutral[key] + k * (target[key] - neutral[key]) for key in neutral}
    spk = plan.speaker
    rate = spk.rate * voice["rate"]
    n_syll = int(rng.integers(5, 11))
    pieces: list[np.ndarray] = [np.zeros(int(sr * rng.uniform(0.08, 0.2)))]
    base = spk.f0 * voice["pitch"]
    for i in range(n_syll):
        dur = rng.uniform(0.7, 1.3) / rate
        n = int(dur * sr)
        t = np.arange(n) / sr
        pos = i / max(n_syll - 1, 1)
        # pitch: declination/slope over the utterance + an accent excursion on this syllable + jitter
        semis = voice["slope"] * (pos - 0.5) + voice["range"] * math.sin(math.pi * rng.random()) * (
            np.sin(np.pi * t / dur) * rng.choice([-0.5, 1.0]))
        f0 = base * 2 ** (semis / 12) * (1 + 0.01 * rng.standard_normal(n).cumsum() / math.sqrt(n))
        phase = np.cumsum(f0 / sr)
        pulses = np.diff(np.floor(phase), prepend=0.0)
        source = signal.lfilter([1.0], [1.0, -voice["pole"]], pulses)
        source = source - source.mean()
        source += voice["breath"] * rng.standard_normal(n) * (np.abs(source).mean() / 0.05 + 1e-3)
        f1, f2, f3 = (f * spk.formant_scale * rng.uniform(0.95, 1.05) for f in VOWELS[int(rng.integers(len(VOWELS)))])
        out = source
        for freq, bw in ((f1, 90.0), (f2, 120.0), (f3, 170.0)):
            b, a = _resonator(freq, bw, sr)
            out = signal.lfilter(b, a, out)
        env = np.sin(np.pi * np.minimum(1.0, t / dur)) ** 0.6
        syllable = out * env
        if rng.random() < 0.45:  # fricative onset: high-passed noise burst
            m = int(sr * rng.uniform(0.03, 0.08))
            burst = signal.lfilter(*signal.butter(2, 3000 / (sr / 2), "high"), rng.standard_normal(m))
            syllable = np.concatenate([0.3 * burst * np.hanning(m), syllable])
        pieces.append(syllable / (np.abs(syllable).max() + 1e-9))
        if rng.random() < 0.35:  # word boundary pause, longer when slow
            pieces.append(np.zeros(int(sr * rng.uniform(0.05, 0.25) / voice["rate"])))
    pieces.append(np.zeros(int(sr * rng.uniform(0.08, 0.2))))
    wave = np.concatenate(pieces) * 0.25 * voice["energy"] * spk.loudness
    wave += 0.002 * rng.standard_normal(len(wave))  # room noise: silence is never digital zero
    return np.clip(wave, -0.99, 0.99).astype(np.float32)
