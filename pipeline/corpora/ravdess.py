"""RAVDESS (Zenodo 1188976): acted statements by 24 actors, as `Actor_NN/<id>.wav|mp4` from the released zips.

A file name `03-01-06-01-02-01-12` holds seven two-digit fields: modality (01 full audio-video, 02 video only,
03 audio only), vocal channel (01 speech, 02 song), emotion (01..08), intensity (01 normal, 02 strong),
statement (01/02), repetition (01/02) and actor (01..24; odd male, even female). One performance is released up
to three times (one file per modality), so an utterance is a performance: its id is the name without the
modality field (`01-06-01-02-01-12`), its audio the audio-only wav and its video the full-AV (or video-only) mp4.
The zips may be extracted into one folder or into one folder each; files are found by name anywhere under root.

Protocols (`PROTOCOLS`, for `models.<m>.protocol`): `speaker` = 6 speaker-disjoint folds of 4 actors each (in id
order, so two male and two female actors; validation = the next fold's actors); `dialogue` = the same folds (the
performances are isolated utterances).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from pipeline.corpora import PreparedCorpus, common
from pipeline.manifest import ManifestError, Segment, Utterance, VideoSegment

log = logging.getLogger(__name__)

CORPUS = "ravdess"
EMOTION_CODES = ("01", "02", "03", "04", "05", "06", "07", "08")
LABEL_SETS: dict[str, dict[str, Any]] = {
    "8class": {"classes": ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"],
               "label_map": {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
                             "06": "fearful", "07": "disgust", "08": "surprised"}},
}
MODALITIES = {"01": "full_av", "02": "video_only", "03": "audio_only"}
CHANNELS = {"01": "speech", "02": "song"}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
PROTOCOLS: dict[str, dict[str, Any]] = {
    "speaker": {"protocol": "speaker_folds", "folds": 6, "val": "next"},
    "dialogue": {"protocol": "speaker_folds", "folds": 6, "val": "next"},
}
DEFAULTS: dict[str, Any] = {
    **common.label_defaults("8class"),
    "vocal_channels": ["speech"],
    "audio_source": "audio_only",
    "video_source": "full_av",
    "bad_names": "error",
}
NAME_PATTERN = re.compile(r"^(?P<modality>0[1-3])-(?P<channel>0[12])-(?P<emotion>0[1-8])-(?P<intensity>0[12])"
                          r"-(?P<statement>0[12])-(?P<repetition>0[12])-(?P<actor>\d{2})$")


def parse_name(stem: str) -> dict[str, str] | None:
    match = NAME_PATTERN.match(stem)
    if not match or not 1 <= int(match["actor"]) <= 24:
        return None
    return match.groupdict()


def prepare(root: Path, options: dict[str, Any]) -> PreparedCorpus:
    """Read extracted RAVDESS zips at `root` into manifest records (see the module docstring)."""
    opts = common.resolve_options(CORPUS, DEFAULTS, options)
    scheme = common.label_scheme(CORPUS, opts, LABEL_SETS, EMOTION_CODES)
    channels = set(common.option_list(CORPUS, opts, "vocal_channels", allowed=list(CHANNELS.values())))
    audio_source = common.option_choice(CORPUS, opts, "audio_source", ["audio_only", "full_av", "none"])
    video_source = common.option_choice(CORPUS, opts, "video_source", ["full_av", "video_only", "none"])
    bad_names = common.option_choice(CORPUS, opts, "bad_names", ["error", "skip"])
    root = common.require_root(root, CORPUS, hint="point it at the folder the RAVDESS zips were extracted into")

    stats: dict[str, Any] = {"bad_names": [], "missing_audio": 0, "missing_video": 0, "dropped_unlabelled": 0}
    performances: dict[str, dict[str, Any]] = {}
    for path in common.walk_files(root, (".wav", ".mp4")):
        fields = parse_name(path.stem)
        expected_suffix = ".wav" if fields and fields["modality"] == "03" else ".mp4"
        if fields is None or path.suffix.lower() != expected_suffix:
            if bad_names == "error":
                raise ManifestError(f"{path.name!r} is not a RAVDESS file name (MM-VV-EE-II-SS-RR-AA, modality 03 "
                                    "as .wav, 01/02 as .mp4); set bad_names: skip to list and ignore such files",
                                    source=path, field="file name")
            stats["bad_names"].append(common.relative(path, root))
            continue
        if CHANNELS[fields["channel"]] not in channels:
            continue
        utt_id = path.stem[3:]
        entry = performances.setdefault(utt_id, {"fields": fields, "files": {}})
        modality = MODALITIES[fields["modality"]]
        if modality in entry["files"]:
            raise common.CorpusLayoutError(f"{CORPUS}: {path.name} appears twice: {entry['files'][modality]} "
                                           f"and {path}")
        entry["files"][modality] = path
    if not performances and not stats["bad_names"]:
        raise common.CorpusLayoutError(f"{CORPUS}: no RAVDESS .wav or .mp4 files under {root}")

    utterances = []
    for utt_id in sorted(performances):
        fields, files = performances[utt_id]["fields"], performances[utt_id]["files"]
        label, keep = scheme.assign(fields["emotion"])
        if not keep:
            stats["dropped_unlabelled"] += 1
            continue
        audio_path = files.get(audio_source)
        video_path = files.get(video_source)
        stats["missing_audio"] += audio_source != "none" and audio_path is None
        stats["missing_video"] += video_source != "none" and video_path is None
        actor = int(fields["actor"])
        utterances.append(Utterance(
            utt_id=utt_id, corpus=CORPUS, speaker=f"Actor_{actor:02d}", session=f"Actor_{actor:02d}",
            audio=Segment(common.relative(audio_path, root)) if audio_path else None,
            video=VideoSegment(common.relative(video_path, root)) if video_path else None,
            text=STATEMENTS[fields["statement"]], label=label,
            extra={"code": fields["emotion"], "vocal_channel": CHANNELS[fields["channel"]],
                   "intensity": "normal" if fields["intensity"] == "01" else "strong",
                   "repetition": int(fields["repetition"]), "sex": "male" if actor % 2 else "female"}))
    stats.update(scheme.stats())
    stats.update(common.summarise(utterances, scheme.classes))
    return PreparedCorpus(utterances, list(scheme.classes), stats)
