"""Tiny corpus trees in each release's exact on-disk format, with the traps of docs/corpora.md, built by code.

Media are 0.5 s: wavs written with soundfile, avi with OpenCV, mp4/flv (which need an audio track or a codec
OpenCV cannot tag) with the ffmpeg binary that imageio-ffmpeg ships. Each kind of media file is encoded once per
process and copied, so a fixture tree costs milliseconds.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import soundfile as sf

SECONDS = 0.5
# What a macOS tarball leaves next to each file: an AppleDouble header (magic 0x00051607) and binary junk.
APPLEDOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        \x00\x02\xff\xfe\x80"
LFS_POINTER = ("version https://git-lfs.github.com/spec/v1\n"
               "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
               "size 73816\n")


@functools.cache
def _template_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="affectflow-media-"))


@functools.cache
def _wav(sample_rate: int) -> Path:
    path = _template_dir() / f"tone_{sample_rate}.wav"
    t = np.arange(int(SECONDS * sample_rate)) / sample_rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32), sample_rate, subtype="PCM_16")
    return path


@functools.cache
def _avi(fourcc: str, width: int, height: int) -> Path:
    """A split-screen clip: left half red, right half blue (IEMOCAP's two actors side by side)."""
    path = _template_dir() / f"clip_{fourcc}_{width}x{height}.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10.0, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {fourcc} avi here")
    frame = np.zeros((height, width, 3), np.uint8)
    frame[:, : width // 2] = (0, 0, 200)
    frame[:, width // 2:] = (200, 0, 0)
    for _ in range(int(SECONDS * 10)):
        writer.write(frame)
    writer.release()
    return path


@functools.cache
def _ffmpeg_clip(suffix: str) -> Path:
    """An mp4 (MPEG-4 video + AAC audio, as MELD's) or flv (Sorenson FLV1 video + Flash ADPCM audio, CREMA-D) clip."""
    path = _template_dir() / f"clip.{suffix}"
    video = ["-f", "lavfi", "-i", f"color=c=green:s=64x48:r=10:d={SECONDS}"]
    codecs = {"mp4": ["-c:v", "mpeg4", "-c:a", "aac"], "flv": ["-c:v", "flv1", "-c:a", "adpcm_swf"],
              "mp3": ["-c:a", "libmp3lame"]}[suffix]
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                    *(video if suffix != "mp3" else []),
                    "-f", "lavfi", "-i", f"sine=frequency=330:sample_rate=16000:duration={SECONDS}",
                    *codecs, "-ar", "22050" if suffix == "flv" else "16000", "-shortest", str(path)],
                   check=True, capture_output=True)
    return path


def put(template: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, dest)
    return dest


def put_wav(dest: Path, sample_rate: int = 16000) -> Path:
    return put(_wav(sample_rate), dest)


def put_avi(dest: Path, fourcc: str = "XVID", width: int = 96, height: int = 48) -> Path:
    return put(_avi(fourcc, width, height), dest)


def put_mp4(dest: Path) -> Path:
    return put(_ffmpeg_clip("mp4"), dest)


def put_flv(dest: Path) -> Path:
    return put(_ffmpeg_clip("flv"), dest)


def put_mp3(dest: Path) -> Path:
    return put(_ffmpeg_clip("mp3"), dest)


def put_text(dest: Path, text: str, encoding: str = "utf-8", newline: str = "\n") -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(text.replace("\n", newline).encode(encoding))
    return dest


def put_appledouble(dest: Path) -> Path:
    """The `._name` twin macOS tar adds beside `dest`."""
    twin = dest.parent / f"._{dest.name}"
    twin.parent.mkdir(parents=True, exist_ok=True)
    twin.write_bytes(APPLEDOUBLE)
    return twin


# ---------------------------------------------------------------------------------------------------------- IEMOCAP
# (utt_id, start, end, code, (V, A, D), transcript or None). Listed as EmoEvaluation lists them: all turns of
# the F actor first, then the M actor's, so the file order is not the time order.
IEMOCAP_DIALOGUES: dict[str, list[tuple[str, float, float, str, tuple[float, float, float], str | None]]] = {
    "Ses01F_impro05a": [
        ("Ses01F_impro05a_F000", 0.0100, 0.1500, "neu", (2.5, 2.5, 2.5), "Excuse me."),
        ("Ses01F_impro05a_F001", 0.2600, 0.3800, "exc", (4.0, 3.5, 3.0), "Yeah, I got it!"),
        ("Ses01F_impro05a_M000", 0.1600, 0.2500, "xxx", (2.0, 3.0, 3.0), "Do you have your forms?"),
        ("Ses01F_impro05a_M001", 0.3900, 0.4900, "fru", (1.5, 3.5, 3.5), "That's out of control."),
    ],
    "Ses01M_script01_1": [
        ("Ses01M_script01_1_F000", 0.0500, 0.2000, "hap", (4.5, 3.0, 3.0), "Oh, it's you."),
        ("Ses01M_script01_1_F001", 0.3000, 0.4500, "sad", (1.5, 2.0, 2.0), "I miss him."),
        ("Ses01M_script01_1_M000", 0.2100, 0.2900, "ang", (1.0, 4.5, 4.0), "Leave it!"),
    ],
    "Ses02M_impro08b": [
        ("Ses02M_impro08b_M000", 0.0200, 0.2000, "sur", (3.0, 4.0, 3.0), "Really?"),
        ("Ses02M_impro08b_F000", 0.2500, 0.4000, "neu", (3.0, 2.0, 3.0), None),
    ],
}
IEMOCAP_NO_VIDEO = {"Ses02M_impro08b"}

_CATEGORY_WORDS = {"neu": "Neutral", "hap": "Happiness", "exc": "Excited", "sad": "Sadness", "ang": "Anger",
                   "fru": "Frustration", "sur": "Surprise", "xxx": "Other"}


def iemocap_emo_evaluation(dialogue: str) -> str:
    lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
    for utt, start, end, code, (v, a, d), _ in IEMOCAP_DIALOGUES[dialogue]:
        word = _CATEGORY_WORDS[code]
        lines += [f"[{start:.4f} - {end:.4f}]\t{utt}\t{code}\t[{v:.4f}, {a:.4f}, {d:.4f}]",
                  f"C-E2:\t{word};\t()", f"C-E3:\t{word}; Frustration;\t()", f"C-F1:\t{word};\t()",
                  "A-E3:\tval 3; act 2; dom  2;\t()", "A-F1:\tval 2; act 3; dom  3;\t(a note; with semicolons)",
                  ""]
    return "\n".join(lines) + "\n"


def iemocap_transcription(dialogue: str) -> str:
    rows = sorted(IEMOCAP_DIALOGUES[dialogue], key=lambda r: r[1])
    lines = [f"{utt} [{start:08.4f}-{end:08.4f}]: {text}" for utt, start, end, _, _, text in rows if text]
    # an id with XX (no wav, no EmoEvaluation block) and a line that is not `ID [t0-t1]: text`
    lines.insert(1, f"{dialogue}_MXX0 [000.1500-000.1600]: [BREATHING]")
    lines.append("M: [LAUGHTER]")
    return "\n".join(lines) + "\n"


def iemocap_tree(base: Path) -> Path:
    """`IEMOCAP_full_release/` with Session1 (2 dialogues) and Session2 (1 dialogue, no avi)."""
    root = base / "IEMOCAP_full_release"
    put_text(root / "Documentation" / "README.txt", "IEMOCAP full release\n")
    for dialogue in IEMOCAP_DIALOGUES:
        session_dir = root / f"Session{int(dialogue[3:5])}"
        evaluation = put_text(session_dir / "dialog" / "EmoEvaluation" / f"{dialogue}.txt",
                              iemocap_emo_evaluation(dialogue))
        put_appledouble(evaluation)
        first = IEMOCAP_DIALOGUES[dialogue][0][0]
        put_text(session_dir / "dialog" / "EmoEvaluation" / "Categorical" / f"{dialogue}_e2_cat.txt",
                 f"{first} :Neutral state; ()\n")
        put_text(session_dir / "dialog" / "EmoEvaluation" / "Attribute" / f"{dialogue}_e3_atr.txt",
                 f"{first} :act 4; :val 3; :dom 2; ()\n")
        put_text(session_dir / "dialog" / "transcriptions" / f"{dialogue}.txt", iemocap_transcription(dialogue))
        put_wav(session_dir / "dialog" / "wav" / f"{dialogue}.wav")
        if dialogue not in IEMOCAP_NO_VIDEO:
            put_appledouble(put_avi(session_dir / "dialog" / "avi" / "DivX" / f"{dialogue}.avi"))
        for utt, *_ in IEMOCAP_DIALOGUES[dialogue]:
            wav = put_wav(session_dir / "sentences" / "wav" / dialogue / f"{utt}.wav")
        put_appledouble(wav)
    return root


# ------------------------------------------------------------------------------------------------------------- MELD
MELD_HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime"
# split -> rows (utterance, speaker, emotion, sentiment, dialogue, utterance id, season, episode, start, end);
# train has no dialogue 1 (an id gap) and no utterance 1 in dialogue 2; times use both `00:` and `0:` hours.
MELD_ROWS: dict[str, list[tuple[str, str, str, str, int, int, int, int, str, str]]] = {
    "train": [
        ("also I was the point person on my company\u2019s transition from the KL-5 to GR-6 system.", "Chandler",
         "neutral", "neutral", 0, 0, 8, 21, "00:16:16,059", "00:16:21,731"),
        ("You must\u2019ve had your hands full.", "The Interviewer", "neutral", "neutral", 0, 1, 8, 21,
         "0:16:21,940", "0:16:23,442"),
        ("\u201cOh my God\u2026\u201d, she said, \"no way\"", "Monica", "surprise", "positive", 2, 0, 1, 3,
         "00:05:01,100", "00:05:03,000"),
        ("Yeah!", "Joey", "joy", "positive", 2, 2, 1, 3, "00:05:04,000", "00:05:04,900"),
        ("I\u2019m fine.", "Ross", "sadness", "negative", 125, 3, 3, 7, "00:10:00,000", "00:10:01,500"),
    ],
    "dev": [
        ("Get out!", "Rachel", "anger", "negative", 0, 0, 4, 1, "00:01:00,000", "00:01:01,000"),
        ("Oh, honey.", "Phoebe", "sadness", "negative", 0, 1, 4, 1, "00:01:01,200", "00:01:02,000"),
        ("Ew.", "Mrs. Geller", "disgust", "negative", 110, 7, 5, 2, "00:02:00,000", "00:02:01,000"),
    ],
    "test": [
        ("What was that?", "Ross", "fear", "negative", 0, 0, 6, 9, "0:00:10,000", "0:00:11,500"),
        ("Nothing.", "Rachel", "neutral", "neutral", 0, 1, 6, 9, "0:00:11,600", "0:00:12,000"),
    ],
}
MELD_CLIP_DIRS = {"train": "train_splits", "dev": "dev_splits_complete", "test": "output_repeated_splits_test"}
MELD_MISSING = {("dev", 110, 7)}  # dev_splits_complete/dia110_utt7.mp4 is missing in the release
MELD_CORRUPT = ("train", 125, 3)  # train_splits/dia125_utt3.mp4 does not decode
MELD_UNANNOTATED = {"dev": ["dia49_utt4.mp4", "dia66_utt9.mp4"],
                    "test": ["dia108_utt2.mp4", "final_videos_testdia101_utt0.mp4"]}


def _csv_field(value: str) -> str:
    if any(ch in value for ch in ',"\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def meld_csv(split: str) -> str:
    lines = [MELD_HEADER]
    for number, row in enumerate(MELD_ROWS[split], start=1):
        lines.append(",".join(_csv_field(str(v)) for v in (number, *row)))
    return "\n".join(lines) + "\n"


def meld_tree(base: Path, encoding: str = "utf-8") -> Path:
    """An extracted MELD.Raw folder: CRLF CSVs (in `encoding`) and the three clip folders with the known faults."""
    root = base / "MELD.Raw"
    for split, rows in MELD_ROWS.items():
        put_text(root / f"{split}_sent_emo.csv", meld_csv(split), encoding=encoding, newline="\r\n")
        clip_dir = root / MELD_CLIP_DIRS[split]
        for row in rows:
            key = (split, row[4], row[5])
            dest = clip_dir / f"dia{row[4]}_utt{row[5]}.mp4"
            if key in MELD_MISSING:
                continue
            if key == MELD_CORRUPT:
                put_text(dest, "\x00\x00\x00\x18ftypmp42 truncated")
            else:
                put_mp4(dest)
        for name in MELD_UNANNOTATED.get(split, []):
            put_mp4(clip_dir / name)
        put_appledouble(clip_dir / "dia0_utt0.mp4")
    return root


# ------------------------------------------------------------------------------------------------------- MSP-IMPROV
# (id, consensus letter, {A, V, D[, N]} with None = NaN in the file, transcript or None, has avi)
MSP_RATINGS: list[tuple[str, str, dict[str, float | None], str | None, bool]] = [
    ("MSP-IMPROV-S01A-F01-S-FM01", "A", {"A": 4.2, "V": 1.8, "D": 3.6, "N": 3.0}, "I can't believe you did it.",
     True),
    ("MSP-IMPROV-S01A-M01-R-MF01", "N", {"A": 2.4, "V": 3.0, "D": 2.8}, "I can't believe you did it.", True),
    ("MSP-IMPROV-S02H-F01-P-FM03", "H", {"A": 3.8, "V": 4.4, "D": 3.2, "N": 4.2}, "That's great news.", False),
    ("MSP-IMPROV-S02H-M01-T-MF02", "O", {"A": 3.0, "V": 3.0, "D": 3.0, "N": 3.5}, "Hmm, okay.", True),
    ("MSP-IMPROV-S05S-F02-S-FM01", "S", {"A": 1.6, "V": 1.4, "D": 2.0, "N": 3.9}, None, True),
    ("MSP-IMPROV-S05S-M02-T-MF01", "X", {"A": 2.0, "V": None, "D": 2.5, "N": 2.0}, "Why?", True),
]
MSP_UNRATED = "MSP-IMPROV-S05S-M02-P-MF09"  # media without a consensus line
_RATER_WORDS = {"A": "Angry", "H": "Happy", "S": "Sad", "N": "Neutral", "O": "Other", "X": "Other"}


def msp_evaluation() -> str:
    lines = []
    for utt, code, values, _, _ in MSP_RATINGS:
        shown = {k: "NaN" if v is None else f"{v:.6f}" for k, v in values.items()}
        consensus = f"UTD-{utt[4:]}.avi; {code}; A:{shown['A']}; V:{shown['V']}; D:{shown['D']}"
        consensus += f" ; N:{shown['N']};" if "N" in shown else ";"  # the irregular space before `; N:`
        lines.append(consensus)
        for rater in ("E01", "E02", "E03"):
            lines.append(f"{rater}; {_RATER_WORDS[code]}; Frustrated,Annoyed; A:3.000000; V:2.000000; "
                         "D:3.000000; N:3.000000;")
        lines.append("")
    return "\n".join(lines)


def msp_tree(base: Path, packaging: str = "release", evaluation_name: str = "Evaluation.txt") -> Path:
    """MSP-IMPROV with media as `session1/S01A/S/<id>.*` (`release`) or `Audio/...` + `Video/...` (`split`)."""
    root = base / "MSP-IMPROV"
    put_text(root / evaluation_name, msp_evaluation())
    for utt, _, _, transcript, has_avi in MSP_RATINGS + [(MSP_UNRATED, "", {}, None, True)]:
        scenario, actor, condition = utt.split("-")[2:5]
        folder = Path(f"session{int(actor[1:])}") / scenario / condition
        audio_dir = root / folder if packaging == "release" else root / "Audio" / folder
        video_dir = root / folder if packaging == "release" else root / "Video" / folder
        put_appledouble(put_wav(audio_dir / f"{utt}.wav", sample_rate=44100))
        if has_avi:
            put_avi(video_dir / f"{utt}.avi", fourcc="MJPG", width=64, height=48)
        if transcript is not None:
            put_text(root / "All_human_transcriptions" / f"{utt}.txt", transcript + "\n")
    return root


# --------------------------------------------------------------------------------------------------------- CREMA-D
# clip -> (VoiceVote, FaceVote, MultiModalVote) of processedResults/summaryTable.csv; "A:N" is a tie
CREMA_CLIPS: dict[str, tuple[str, str, str]] = {
    "1001_DFA_ANG_XX": ("A", "A", "A"),
    "1001_IEO_HAP_HI": ("H", "N", "H"),
    "1001_IEO_NEU_XX": ("N", "N", "N"),
    "1002_ITS_FEA_XX": ("S", "F", "F"),
    "1002_TSI_DIS_XX": ("A:N", "D", "D"),
    "1091_WSI_SAD_LO": ("S", "S", "S"),
}
CREMA_BLANK_FLV = "1002_ITS_FEA_XX"  # blank media files exist in the release (CREMA-D issue #13)


def crema_tree(base: Path, lfs: bool = False, bad_name: bool = False, audio: str | None = "wav") -> Path:
    """A CREMA-D checkout; `lfs` makes every media file a Git LFS pointer; `bad_name` adds 1040_ITH_SAD_X.wav;
    `audio` is wav (AudioWAV/), mp3 (AudioMP3/) or None (no audio folder, as a checkout of the videos only)."""
    root = base / "CREMA-D"
    for clip in CREMA_CLIPS:
        if lfs:
            put_text(root / "AudioWAV" / f"{clip}.wav", LFS_POINTER)
            put_text(root / "VideoFlash" / f"{clip}.flv", LFS_POINTER)
            continue
        if audio == "wav":
            put_wav(root / "AudioWAV" / f"{clip}.wav")
        elif audio == "mp3":
            put_mp3(root / "AudioMP3" / f"{clip}.mp3")
        if clip == CREMA_BLANK_FLV:
            put_text(root / "VideoFlash" / f"{clip}.flv", "")
        else:
            put_flv(root / "VideoFlash" / f"{clip}.flv")
    if bad_name:
        put_wav(root / "AudioWAV" / "1040_ITH_SAD_X.wav")
    if audio == "wav" or lfs:
        put_appledouble(root / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    put_text(root / "VideoDemographics.csv", "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n"
             "1002,21,Female,Caucasian,Not Hispanic\n1091,29,Female,Asian,Not Hispanic\n")
    put_text(root / "SentenceFilenames.csv", "Stimulus_Number,Filename\n1,IEO\n2,TIE\n")
    lines = [",FileName,VoiceVote,VoiceLevel,FaceVote,FaceLevel,MultiModalVote,MultiModalLevel"]
    for number, (clip, (voice, face, both)) in enumerate(CREMA_CLIPS.items(), start=1):
        lines.append(f"{number},{clip},{voice},60,{face},70,{both},80")
    put_text(root / "processedResults" / "summaryTable.csv", "\n".join(lines) + "\n")
    return root


# --------------------------------------------------------------------------------------------------------- RAVDESS
# relative path -> kind; the zips extracted each into its own folder, as a lab that unpacks them one by one would
RAVDESS_FILES = [
    "Audio_Speech_Actors_01-24/Actor_01/03-01-01-01-01-01-01.wav",
    "Audio_Speech_Actors_01-24/Actor_01/03-01-05-02-02-01-01.wav",
    "Audio_Speech_Actors_01-24/Actor_02/03-01-03-01-02-02-02.wav",
    "Audio_Song_Actors_01-24/Actor_01/03-02-02-01-01-01-01.wav",
    "Video_Speech_Actor_01/Actor_01/01-01-01-01-01-01-01.mp4",
    "Video_Speech_Actor_01/Actor_01/02-01-01-01-01-01-01.mp4",
    "Video_Speech_Actor_02/Actor_02/01-01-03-01-02-02-02.mp4",
    "Video_Speech_Actor_02/Actor_02/02-01-08-02-01-01-02.mp4",
]


def ravdess_tree(base: Path) -> Path:
    root = base / "RAVDESS"
    for name in RAVDESS_FILES:
        if name.endswith(".wav"):
            put_appledouble(put_wav(root / name, sample_rate=48000))
        else:
            put_mp4(root / name)
    return root


# ------------------------------------------------------------------------------------------ release variants
# What copies of the releases in the wild do to their files; each transform keeps the content the same, so an
# adapter must give the same utterances. Text files per corpus (globs under the root) and media suffixes.
TEXT_FILES = {
    "iemocap": ["Session*/dialog/EmoEvaluation/*.txt", "Session*/dialog/transcriptions/*.txt"],
    "meld": ["*_sent_emo.csv"],
    "msp_improv": ["Evaluation.txt", "All_human_transcriptions/*.txt"],
    "crema_d": ["processedResults/summaryTable.csv"],
}
MEDIA_SUFFIXES = {"iemocap": [".wav", ".avi"], "meld": [".mp4"], "msp_improv": [".wav", ".avi"],
                  "crema_d": [".wav", ".flv"], "ravdess": [".wav", ".mp4"]}


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").split("\n")


TEXT_VARIANTS = {
    "lf": lambda text: "\n".join(_lines(text)).encode(),
    "crlf": lambda text: "\r\n".join(_lines(text)).encode(),
    "utf8_bom": lambda text: b"\xef\xbb\xbf" + text.encode(),
    "utf16_bom": lambda text: text.encode("utf-16"),
    # trailing spaces on every line, a blank and a whitespace-only line after every line
    "padded": lambda text: "\n".join(f"{line}  \n\n   " for line in _lines(text)).encode(),
}


def text_files(root: Path, corpus: str) -> list[Path]:
    return sorted(p for pattern in TEXT_FILES[corpus] for p in root.glob(pattern) if not p.name.startswith("."))


def rewrite_text(root: Path, corpus: str, transform: Callable[[str], bytes]) -> list[Path]:
    """Rewrite every text file the adapter reads with `transform(text) -> bytes`; returns the files."""
    files = text_files(root, corpus)
    for path in files:
        path.write_bytes(transform(path.read_bytes().decode("utf-8")))
    return files


def upper_extensions(root: Path, suffixes: list[str]) -> int:
    """Rename media `x.wav` -> `x.WAV` (as FAT copies and some Windows tools leave them); returns the count."""
    renamed = 0
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in suffixes and not path.name.startswith("."):
            path.rename(path.with_suffix(path.suffix.upper()))
            renamed += 1
    return renamed


def macos_debris(root: Path) -> int:
    """What unpacking a macOS archive leaves: a `._` twin beside every file and folder, `.DS_Store` files and a
    `__MACOSX/` tree mirroring the corpus with `._` files (whose names end in .wav, .txt, ...)."""
    entries = sorted(root.rglob("*"))
    for path in entries:
        put_appledouble(path)
        mirror = root / "__MACOSX" / path.relative_to(root)
        put_appledouble(mirror)
        if path.is_dir():
            (path / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    return len(entries)


# --------------------------------------------------------------------------------- IEMOCAP's label counts
# The consensus codes of the 10,039 EmoEvaluation block heads of the release. MMIN's 4-class set is neu + hap +
# exc (merged into hap) + sad + ang = 1708 + 595 + 1041 + 1084 + 1103 = 5,531.
IEMOCAP_RELEASE_CODES = {"neu": 1708, "fru": 1849, "ang": 1103, "sad": 1084, "exc": 1041, "hap": 595, "sur": 107,
                         "fea": 40, "oth": 3, "dis": 2, "xxx": 2507}


def iemocap_label_tree(base: Path, codes: dict[str, int] = IEMOCAP_RELEASE_CODES) -> Path:
    """EmoEvaluation files only (5 sessions, 4 dialogues each) whose block heads carry exactly `codes`."""
    root = base / "IEMOCAP_full_release"
    sequence = [code for code, count in sorted(codes.items()) for _ in range(count)]
    dialogues = [f"Ses{n:02d}{'FM'[d % 2]}_impro{d + 1:02d}" for n in range(1, 6) for d in range(4)]
    per_dialogue = -(-len(sequence) // len(dialogues))
    for d, dialogue in enumerate(dialogues):
        chunk = sequence[d * per_dialogue:(d + 1) * per_dialogue]
        lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        for i, code in enumerate(chunk):
            speaker = "FM"[i % 2]
            lines += [f"[{i * 2.0 + 0.5:.4f} - {i * 2.0 + 1.5:.4f}]\t{dialogue}_{speaker}{i:03d}\t{code}\t"
                      "[2.5000, 2.5000, 2.5000]", "C-E2:\tNeutral;\t()", ""]
        put_text(root / f"Session{int(dialogue[3:5])}" / "dialog" / "EmoEvaluation" / f"{dialogue}.txt",
                 "\n".join(lines) + "\n")
    return root


def iemocap_sessions_tree(base: Path, sessions: int = 5) -> Path:
    """A whole-release-shaped IEMOCAP: every session with an impro and a script dialogue of six turns (codes neu,
    ang, sad, hap, exc, fru alternating between the actors), sentence wavs, transcripts and split-screen avis."""
    root = base / "IEMOCAP_full_release"
    codes = ["neu", "ang", "sad", "hap", "exc", "fru"]
    for n in range(1, sessions + 1):
        session_dir = root / f"Session{n}"
        for dialogue in (f"Ses{n:02d}F_impro01", f"Ses{n:02d}M_script01_1"):
            lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            transcript = []
            for i, code in enumerate(codes):
                utt = f"{dialogue}_{'FM'[i % 2]}{i // 2:03d}"
                start, end = 0.05 + i * 0.07, 0.1 + i * 0.07
                lines += [f"[{start:.4f} - {end:.4f}]\t{utt}\t{code}\t[2.5000, 3.0000, 3.5000]",
                          "C-E2:\tNeutral;\t()", ""]
                transcript.append(f"{utt} [{start:08.4f}-{end:08.4f}]: Utterance {i} of {dialogue}.")
                put_wav(session_dir / "sentences" / "wav" / dialogue / f"{utt}.wav")
            put_text(session_dir / "dialog" / "EmoEvaluation" / f"{dialogue}.txt", "\n".join(lines) + "\n")
            put_text(session_dir / "dialog" / "transcriptions" / f"{dialogue}.txt", "\n".join(transcript) + "\n")
            put_wav(session_dir / "dialog" / "wav" / f"{dialogue}.wav")
            put_avi(session_dir / "dialog" / "avi" / "DivX" / f"{dialogue}.avi")
    return root


# EmoDB (Berlin): its 10 speakers; file names <speaker><text><emotion code><version>.wav
EMODB_SPEAKERS = ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16")
EMODB_CODES = "WLEAFTN"


def emodb_tree(base: Path, texts: tuple[str, ...] = ("a01", "b02")) -> Path:
    """`wav/` with one file per speaker, text and emotion (a `.WAV` among them) and a macOS `._` twin."""
    root = base / "emodb"
    for speaker in EMODB_SPEAKERS:
        for text in texts:
            for code in EMODB_CODES:
                suffix = ".WAV" if (speaker, text, code) == ("16", "b02", "N") else ".wav"
                put_wav(root / "wav" / f"{speaker}{text}{code}a{suffix}")
    put_appledouble(root / "wav" / "03a01Wa.wav")
    return root
