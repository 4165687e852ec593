"""The FER2013 / FER+ reader and writer on generated files: both target modes, FER+'s row dropping, and errors
that name the file and line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.denseface.fer import (
    FER2013_CLASSES,
    FERPLUS_CLASSES,
    FerFormatError,
    read_fer,
    write_fer2013,
    write_ferplus,
)

MAJORITY = {"targets": "majority", "drop_single_votes": True, "majority_share": 0.5}
DISTRIBUTION = {**MAJORITY, "targets": "distribution"}

# votes in the order neutral happiness surprise sadness anger disgust fear contempt unknown NF
VOTES = np.array([
    [8, 1, 1, 0, 0, 0, 0, 0, 0, 0],  # 0 neutral, clear majority
    [0, 0, 0, 0, 0, 0, 0, 0, 2, 8],  # 1 not a face -> dropped
    [0, 3, 0, 0, 0, 0, 0, 0, 5, 2],  # 2 unknown on top -> dropped
    [0, 4, 4, 0, 0, 0, 0, 0, 0, 2],  # 3 happiness/surprise tie, no majority: dropped in majority mode only
    [1, 0, 0, 6, 1, 0, 0, 0, 0, 2],  # 4 sadness 6 of 8 after single votes go
    [0, 0, 0, 0, 3, 0, 0, 0, 3, 4],  # 5 NF on top -> dropped
    [2, 0, 0, 0, 0, 0, 0, 7, 1, 0],  # 6 contempt
    [0, 0, 9, 0, 0, 0, 0, 0, 1, 0],  # 7 surprise, but no image name -> dropped
])
USAGE = ["Training", "Training", "Training", "PublicTest", "PublicTest", "PrivateTest", "PrivateTest", "Training"]


def make_files(tmp_path: Path, votes: np.ndarray = VOTES, usage: list[str] = USAGE) -> tuple[Path, Path, np.ndarray]:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(len(votes), 48, 48), dtype=np.uint8)
    emotions = np.arange(len(votes)) % 7
    names = [f"fer{i:07d}.png" for i in range(len(votes))]
    names[7] = ""
    fer, plus = tmp_path / "fer2013.csv", tmp_path / "fer2013new.csv"
    write_fer2013(fer, images, emotions, usage)
    write_ferplus(plus, votes, usage, names)
    return fer, plus, images


def test_majority_targets_drop_what_ferplus_drops(tmp_path: Path) -> None:
    fer, plus, images = make_files(tmp_path)
    fer_set = read_fer(fer, plus, MAJORITY)
    assert fer_set.classes == list(FERPLUS_CLASSES)
    assert fer_set.rows.tolist() == [0, 4, 6]
    assert [fer_set.classes[k] for k in fer_set.labels] == ["neutral", "sadness", "contempt"]
    np.testing.assert_array_equal(fer_set.targets.sum(1), 1.0)
    assert set(np.unique(fer_set.targets)) == {0.0, 1.0}
    np.testing.assert_array_equal(fer_set.images, images[[0, 4, 6]])
    assert fer_set.usage.tolist() == ["Training", "PublicTest", "PrivateTest"]
    assert fer_set.dropped == {"not a face": 2, "unknown majority": 1, "no majority": 1, "no image": 1}
    assert len(fer_set.subset("PublicTest")) == 1
    assert fer_set.counts()["PrivateTest"]["contempt"] == 1


def test_distribution_targets_are_the_votes_after_single_votes_go(tmp_path: Path) -> None:
    fer, plus, _ = make_files(tmp_path)
    fer_set = read_fer(fer, plus, DISTRIBUTION)
    assert fer_set.rows.tolist() == [0, 3, 4, 6]
    tie = fer_set.targets[1]
    np.testing.assert_allclose(tie[:3], [0.0, 0.5, 0.5])
    np.testing.assert_allclose(fer_set.targets[0], np.eye(8)[0])  # the single happiness/surprise votes go
    np.testing.assert_allclose(fer_set.targets[3][[0, 7]], [2 / 9, 7 / 9], rtol=1e-6)
    np.testing.assert_allclose(fer_set.targets.sum(1), 1.0, rtol=1e-6)
    kept_singles = read_fer(fer, plus, {**DISTRIBUTION, "drop_single_votes": False})
    np.testing.assert_allclose(kept_singles.targets[0][:3], [0.8, 0.1, 0.1], rtol=1e-6)


def test_without_ferplus_the_fer2013_labels_are_used(tmp_path: Path) -> None:
    fer, _, images = make_files(tmp_path)
    fer_set = read_fer(fer, None, MAJORITY)
    assert fer_set.classes == list(FER2013_CLASSES)
    assert fer_set.labels.tolist() == (np.arange(len(VOTES)) % 7).tolist()
    np.testing.assert_array_equal(fer_set.images, images)


def replace_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(("line", "message"), [
    ("3,1 2 3,Training", "3 values, expected 2304"),
    ("3," + " ".join(["7"] * 2303) + " x,Training", "'x' is not an integer"),
    ("3," + " ".join(["300"] * 2304) + ",Training", "0..255"),
    ("9," + " ".join(["7"] * 2304) + ",Training", "emotion 9 outside 0..6"),
    ("3," + " ".join(["7"] * 2304) + ",Validation", "Usage 'Validation'"),
])
def test_fer2013_errors_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    fer, plus, _ = make_files(tmp_path)
    replace_line(fer, 4, line)
    with pytest.raises(FerFormatError, match=message) as err:
        read_fer(fer, plus, MAJORITY)
    assert err.value.line == 4 and err.value.source == str(fer)
    assert f"{fer}:line 4" in str(err.value)


def test_ferplus_errors_name_file_and_line(tmp_path: Path) -> None:
    fer, plus, _ = make_files(tmp_path)
    replace_line(plus, 6, "PublicTest,fer0000004.png,1,0,0,six,1,0,0,0,0,2")
    with pytest.raises(FerFormatError, match=r"line 6: sadness votes 'six' is not an integer"):
        read_fer(fer, plus, MAJORITY)
    fer, plus, _ = make_files(tmp_path)
    replace_line(plus, 3, "PrivateTest,fer0000001.png,0,0,0,0,0,0,0,0,2,8")
    with pytest.raises(FerFormatError, match=r"fer2013new.csv:line 3: Usage 'PrivateTest' differs from 'Training' "
                                             r"on line 3 of .*fer2013.csv"):
        read_fer(fer, plus, MAJORITY)


def test_misaligned_or_malformed_files_are_refused(tmp_path: Path) -> None:
    fer, plus, _ = make_files(tmp_path)
    write_ferplus(plus, VOTES[:5], USAGE[:5])
    with pytest.raises(FerFormatError, match="5 data rows, but .* has 8"):
        read_fer(fer, plus, MAJORITY)
    fer.write_text("emotion,pixels\n0,1 2 3\n")
    with pytest.raises(FerFormatError, match=r"line 1: header .* lacks the columns \['Usage'\]"):
        read_fer(fer, None, MAJORITY)
    with pytest.raises(ValueError, match="targets must be one of"):
        read_fer(fer, None, {**MAJORITY, "targets": "soft"})


def test_writer_round_trips_and_accepts_reordered_columns(tmp_path: Path) -> None:
    fer, plus, images = make_files(tmp_path)
    lines = fer.read_text().splitlines()
    reordered = ["Usage,emotion,pixels"]
    for line in lines[1:]:
        emotion, pixels, usage = line.split(",")
        reordered.append(f"{usage},{emotion},{pixels}")
    fer.write_text("\n".join(reordered) + "\n")
    fer_set = read_fer(fer, plus, MAJORITY)
    np.testing.assert_array_equal(fer_set.images, images[[0, 4, 6]])
