"""`hf_vision`: any transformers image encoder (CLIP vision, ViT, DINOv2, ...) on the face track's crops, (T, D).

The model comes from a local directory, the local Hugging Face cache (never downloaded) or
`python-package:<module>` (pipeline/extract/model_files.py, as the text encoder finds its model); the constructor
resolves it and reads its config before any work, so a missing model fails first, naming the path. Crops (gray
crops repeated over three channels) are resized to the model's input size (the preprocessor's crop size when
preprocessor_config.json names one, else the config's `image_size`) with antialiased bilinear interpolation in
torch and normalised with the preprocessor's mean and std (or the model family's published ones). `pooling: cls`
takes the first token of the last hidden layer (before CLIP's post-layernorm, which only its pooler applies),
`mean` the mean of the patch tokens (DINOv2's register tokens left out; SigLIP, without a CLS token, takes `mean`).
All the crops of a work unit go through the model in batches of at most `crops_per_batch`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual name

from models.trainer import pick_device
from pipeline.extract import ExtractorConfigError, library_versions
from pipeline.extract.compute import compute_facts
from pipeline.extract.face_embed import FaceEmbedder
from pipeline.extract.model_files import ModelFiles, resolve_model

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "model": "openai/clip-vit-large-patch14",  # hub id (local HF cache only), local directory, python-package:<m>
    "revision": None,  # HF revision to take from the cache; None = what `main` names
    "pooling": "cls",  # cls (first token of the last layer) | mean (mean of the patch tokens)
    "crops_per_batch": 64,  # crops per forward pass at most (CPU; 256+ on a GPU)
    "batch_size": 8,  # utterances per work unit
    "dtype": "auto",  # auto (float16 on a GPU, float32 on the CPU) | float32 | float16 | bfloat16
    "device": "auto",
}
POOLINGS = ("cls", "mean")
# normalisation when the model folder has no preprocessor_config.json (the families' published values)
FAMILY_MEAN_STD: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "dinov2": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
HALF_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # ViT's


def _family(model_type: str) -> str:
    for family in ("clip", "dinov2", "siglip"):
        if model_type.startswith(family):
            return family
    return model_type


class HfVisionExtractor(FaceEmbedder):
    name = "hf_vision"
    version = "1"

    def __init__(self, config: dict[str, Any], corpus_root: Path, face_track: str | Path | None = None) -> None:
        super().__init__(self.with_defaults(config, DEFAULTS), corpus_root, face_track)
        cfg = self.config
        if cfg["pooling"] not in POOLINGS:
            raise ExtractorConfigError(f"hf_vision: pooling must be cls or mean, got {cfg['pooling']!r}")
        for key in ("crops_per_batch", "batch_size"):
            if not isinstance(cfg[key], int) or cfg[key] < 1:
                raise ExtractorConfigError(f"hf_vision: {key} must be a positive integer, got {cfg[key]!r}")
        self.files: ModelFiles = resolve_model(cfg["model"], cfg["revision"])
        from transformers import AutoConfig

        full = AutoConfig.from_pretrained(self.files.path)
        self.model_config = getattr(full, "vision_config", None) or full
        if not hasattr(self.model_config, "image_size") or not hasattr(self.model_config, "hidden_size"):
            raise ExtractorConfigError(f"hf_vision: {cfg['model']!r} ({full.model_type}) is not an image encoder "
                                       "(its config has no image_size)", str(self.files.path))
        self.input_size, self.mean, self.std = self._preprocessing(full.model_type)
        self.device = str(pick_device(cfg["device"]))
        dtype = cfg["dtype"]
        self.dtype_name = ("float16" if self.device.startswith("cuda") else "float32") if dtype == "auto" else dtype
        # tokens before the patches: CLS and DINOv2's registers; SigLIP has none (and so no CLS to pool)
        family = _family(full.model_type)
        self.prefix_tokens = 0 if family == "siglip" else 1 + int(getattr(self.model_config, "num_register_tokens", 0)
                                                                   or 0)
        if self.prefix_tokens == 0 and cfg["pooling"] == "cls":
            raise ExtractorConfigError(f"hf_vision: {cfg['model']!r} ({full.model_type}) has no CLS token; use "
                                       "pooling: mean")
        self._model: Any = None
        self._identity: dict[str, Any] | None = None

    def _preprocessing(self, model_type: str) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
        """Input size, mean and std: the model folder's preprocessor_config.json, else its family's values."""
        mean, std = FAMILY_MEAN_STD.get(_family(model_type), HALF_MEAN_STD)
        size = int(self.model_config.image_size)
        path = self.files.path / "preprocessor_config.json"
        if path.is_file():
            pre = json.loads(path.read_text(encoding="utf-8"))
            mean, std = tuple(pre.get("image_mean", mean)), tuple(pre.get("image_std", std))
            crop = pre.get("crop_size") if pre.get("do_center_crop", True) else None
            if isinstance(crop, dict):
                crop = crop.get("height") or crop.get("shortest_edge")
            size = int(crop) if crop else size
        return size, tuple(float(m) for m in mean), tuple(float(s) for s in std)

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "_model": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """On another host (a Ray worker) the model may live elsewhere: find it again by its name, same revision."""
        self.__dict__.update(state)
        self.files = self.files.found_again(self.config["model"], self.config["revision"])

    @property
    def dim(self) -> int:
        return int(self.model_config.hidden_size)

    def describe(self) -> dict[str, Any]:
        if self._identity is None:
            self._identity = {
                **self.files.identity(self.model_config.model_type),
                "hidden_size": self.dim, "pooling": self.config["pooling"],
                "input_size": self.input_size, "image_mean": list(self.mean), "image_std": list(self.std),
                "compute_device": self.device.split(":")[0], "compute_dtype": self.dtype_name,
                "feature_names": [f"{self.name}_{i}" for i in range(self.dim)],
                "library_versions": library_versions("torch", "transformers"),
                "compute": compute_facts(self.device),
            }
        return {**self._identity, **self.track_attributes()}

    def setup(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModel

        model = AutoModel.from_pretrained(self.files.path, dtype=getattr(torch, self.dtype_name))
        model = getattr(model, "vision_model", model) if hasattr(model.config, "vision_config") else model
        self._model = model.to(self.device).eval()

    def pixels(self, crops: Sequence[np.ndarray]) -> torch.Tensor:
        """uint8 crops (H, W or H, W, 3) -> normalised float pixels [N, 3, S, S] on the model's device."""
        x = torch.from_numpy(np.stack(crops)).to(self.device)
        x = x.unsqueeze(1).expand(-1, 3, -1, -1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        x = x.float().div_(255.0)
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False,
                              antialias=True)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return ((x - mean) / std).to(getattr(torch, self.dtype_name))

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pooled last hidden layer [N, D] of a batch of pixels."""
        hidden = self._model(pixel_values=pixels).last_hidden_state
        if self.config["pooling"] == "cls":
            return hidden[:, 0]
        return hidden[:, self.prefix_tokens:].mean(dim=1)

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Features [N, dim] float32 of uint8 crops, `crops_per_batch` per forward pass."""
        self.setup()
        out = np.zeros((len(crops), self.dim), np.float32)
        size = int(self.config["crops_per_batch"])
        with torch.inference_mode():
            for lo in range(0, len(crops), size):
                batch = self.encode(self.pixels(crops[lo:lo + size]))
                out[lo:lo + len(batch)] = batch.float().cpu().numpy()
        return out
