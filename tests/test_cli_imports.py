"""`affectflow prepare`, `split` and `--help` never import torch, transformers, opensmile or facenet-pytorch: the
stages that need them import them. Each command runs in a fresh interpreter that then lists what it imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.trimmed_params import without_cross_corpus

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("torch", "transformers", "opensmile", "facenet_pytorch")
PROBE = """
import json, sys
from pipeline.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as exit_:
    rc = exit_.code
print(json.dumps({"rc": rc, "imported": sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)}))
""".replace("FORBIDDEN", repr(FORBIDDEN))


def probe(cwd: Path, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=300)
    return json.loads(result.stdout.strip().splitlines()[-1]) | {"stderr": result.stderr}


def test_prepare_split_and_help_import_no_model_library(tmp_path: Path) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["corpora"] = {"tiny": {"adapter": "demo", "root": "data/tiny/raw", "options": {
        "seed": 5, "sessions": 2, "dialogues_per_session": 1, "turns": [4, 4],
        "fer": {"train_per_class": 1, "test_per_class": 1}},
        "splits": {"speaker": {"protocol": "speaker_folds", "val": "next"}}}}
    params["report"]["corpora"] = ["tiny"]
    without_cross_corpus(params)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for args in (["--help"], ["prepare", "--help"], ["prepare", "tiny"], ["split", "tiny"]):
        out = probe(tmp_path, *args)
        assert out["rc"] == 0, out["stderr"]
        assert out["imported"] == [], (args, out["imported"])
    assert (tmp_path / "splits" / "tiny.json").exists()
    # the probe can fail: a stage that needs torch does import it
    out = probe(tmp_path, "train", "utt_fusion", "tiny")
    assert "torch" in out["imported"]
