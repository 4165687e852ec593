"""Denseface: the DenseNet-BC channel arithmetic (342-d at depth 100 / growth 12), the checkpoint round trip and
its mismatch errors, and a tiny training run on generated FER-format faces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.denseface import Denseface, DensefaceConfig, denseface_feature_dim
from pipeline.denseface.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pipeline.denseface.fer import write_fer2013, write_ferplus
from pipeline.denseface.train import TrainConfigError, train_denseface
from tests._face_media import FER_NORMALISATION, one_thread, synthetic_fer_faces  # noqa: F401 - autouse fixture


def test_feature_is_342_at_depth_100_growth_12() -> None:
    torch.manual_seed(0)
    model = Denseface(DensefaceConfig(depth=100, growth_rate=12)).eval()
    assert model.config.layers_per_block() == 16
    assert model.config.block_channels() == [(24, 216), (108, 300), (150, 342)]
    with torch.no_grad():
        x = torch.randn(2, 1, 64, 64)
        features = model.features(x)
        logits = model(x)
    assert features.shape == (2, 342) and model.feature_dim == 342
    assert logits.shape == (2, 8)
    assert torch.isfinite(features).all() and (features >= 0).all()  # pooled after ReLU


def test_feature_dim_follows_depth_and_growth() -> None:
    assert denseface_feature_dim(40, 12) == 132  # 24 -> 96 -> 48 -> 120 -> 60 -> 132
    assert denseface_feature_dim(100, 24) == 684
    model = Denseface(DensefaceConfig(depth=22, growth_rate=8, n_classes=3))
    with torch.no_grad():
        assert model.eval().features(torch.zeros(1, 1, 48, 48)).shape == (1, denseface_feature_dim(22, 8))
    with pytest.raises(ValueError, match="depth 99 does not fit 3 blocks"):
        DensefaceConfig.from_dict({"depth": 99})
    with pytest.raises(ValueError, match="unknown Denseface network settings"):
        DensefaceConfig.from_dict({"depth": 40, "width": 3})
    with pytest.raises(ValueError, match=r"expected \[N, 1, H, W\]"):
        model.features(torch.zeros(1, 3, 48, 48))


def test_checkpoint_round_trip_and_mismatch_errors(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Denseface(DensefaceConfig(depth=40, growth_rate=12)).eval()
    classes = [f"c{i}" for i in range(8)]
    path = save_checkpoint(tmp_path / "ck.pt", model, classes, FER_NORMALISATION, extra={"best_epoch": 3})
    loaded = load_checkpoint(path, {"depth": 40, "growth_rate": 12})
    assert loaded.classes == classes and loaded.normalisation == FER_NORMALISATION
    assert loaded.extra == {"best_epoch": 3}
    x = torch.randn(3, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.build().features(x), model.features(x), rtol=0, atol=0)

    with pytest.raises(CheckpointError, match=r"does not fit the configured network: depth: configured 100, "
                                              r"checkpoint 40; growth_rate: configured 24, checkpoint 12"):
        load_checkpoint(path, {"depth": 100, "growth_rate": 24})

    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["classifier.weight"] = torch.zeros(8, 100)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"weights do not fit .*classifier.weight \(8, 100\) vs \(8, 132\)"):
        load_checkpoint(tmp_path / "bad.pt")

    torch.save(model.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="not an affectflow Denseface checkpoint"):
        load_checkpoint(tmp_path / "bare.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="cannot be loaded"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "absent.pt")


def training_config(fer: Path, plus: Path | None, **optim: object) -> dict:
    return {
        "data": {"fer2013": str(fer), "ferplus": str(plus) if plus else None, "targets": "majority",
                 "drop_single_votes": True, "majority_share": 0.5},
        "network": {"depth": 10, "growth_rate": 6, "n_blocks": 3, "compression": 0.5, "bottleneck": True,
                    "dropout": 0.0},
        "input": {"size": 64, "mean": 131.0754, "std": 47.858177},
        "augment": {"enabled": True, "flip": True, "max_rotation_deg": 5.0, "max_scale": 0.05, "max_shift": 0.05},
        "optim": {"epochs": 3, "batch_size": 16, "eval_batch_size": 64, "lr": 0.05, "momentum": 0.9,
                  "nesterov": True, "weight_decay": 1e-4, "lr_milestones": [0.5, 0.75], "lr_gamma": 0.1, **optim},
        "seed": 0, "device": "cpu",
    }


def write_fer_set(tmp_path: Path, n: int = 96) -> tuple[Path, Path]:
    images, labels = synthetic_fer_faces(n, 4, seed=0)
    usage = np.array(["Training"] * n, dtype=object)
    usage[n * 3 // 4:n * 7 // 8] = "PublicTest"
    usage[n * 7 // 8:] = "PrivateTest"
    votes = np.zeros((n, 10), np.int64)
    votes[np.arange(n), labels] = 8  # FER+ classes 0..3: neutral, happiness, surprise, sadness
    votes[:, 8] = 2
    fer, plus = tmp_path / "fer2013.csv", tmp_path / "fer2013new.csv"
    write_fer2013(fer, images, labels % 7, list(usage))
    write_ferplus(plus, votes, list(usage))
    return fer, plus


def test_tiny_training_run_lowers_the_loss_and_is_reproducible(tmp_path: Path) -> None:
    fer, plus = write_fer_set(tmp_path)
    config = training_config(fer, plus)
    metrics = train_denseface(config, tmp_path / "out/denseface.pt", tmp_path / "out/metrics.json",
                              tmp_path / "out/history.json", progress=False)
    assert metrics["train"]["last_epoch_loss"] < metrics["train"]["first_epoch_loss"]
    written = json.loads((tmp_path / "out/metrics.json").read_text())
    assert written == json.loads(json.dumps(metrics))
    assert written["public_test"]["faces"] == 12 and written["private_test"]["faces"] == 12
    assert 0 <= written["private_test"]["accuracy"] <= 1 and written["feature_dim"] == denseface_feature_dim(10, 6)
    assert len(json.loads((tmp_path / "out/history.json").read_text())) == 3
    checkpoint = load_checkpoint(tmp_path / "out/denseface.pt", {"depth": 10, "growth_rate": 6})
    assert checkpoint.classes[:4] == ["neutral", "happiness", "surprise", "sadness"]
    assert checkpoint.normalisation == FER_NORMALISATION
    assert checkpoint.extra["best_epoch"] == metrics["best_epoch"]
    # same config, same bytes (DVC shares the outputs across a lab)
    train_denseface(config, tmp_path / "again/denseface.pt", tmp_path / "again/metrics.json", progress=False)
    assert (tmp_path / "again/denseface.pt").read_bytes() == (tmp_path / "out/denseface.pt").read_bytes()
    assert (tmp_path / "again/metrics.json").read_text() == (tmp_path / "out/metrics.json").read_text()


def test_training_config_errors_come_before_any_work(tmp_path: Path) -> None:
    fer, plus = write_fer_set(tmp_path, n=40)
    config = training_config(fer, plus)
    del config["optim"]["lr"]
    with pytest.raises(TrainConfigError, match=r"optim: missing \['lr'\]"):
        train_denseface(config, tmp_path / "ck.pt", tmp_path / "m.json", progress=False)
    config = training_config(fer, plus)
    config["network"]["depth"] = 11
    with pytest.raises(TrainConfigError, match="depth 11 does not fit"):
        train_denseface(config, tmp_path / "ck.pt", tmp_path / "m.json", progress=False)
    assert not (tmp_path / "ck.pt").exists()
