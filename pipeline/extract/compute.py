"""The facts that decide the bits of a torch-computed store, recorded in its attributes (`compute`).

Measured on the demo's BERT store (MiniLM, 60 sentences): the features change in the last bits (up to 4e-6) when
torch's own kernels dispatch to AVX2 instead of AVX512 (`ATEN_CPU_CAPABILITY`) and, independently, when oneDNN does
(`ONEDNN_MAX_CPU_ISA`); they do not change with the number of threads on the default `cpu_linear: onednn` path
(1, 2 and 4 threads give the same bytes), but do on `cpu_linear: torch`. So two machines give the same torch-computed
store only with the same kernels (CPU instruction set, or GPU model and CUDA/cuDNN) and the same library versions;
these facts go into the store so that a difference explains itself. Recorded: what selects kernels, nothing else
(no host name, no CPU model string, no core count).
"""

from __future__ import annotations

import os
from typing import Any

ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_isa_flags() -> list[str]:
    """The instruction-set extensions, among those oneDNN and torch dispatch on, that this CPU has (Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [flag for flag in ISA_FLAGS if flag in have]
    except OSError:
        pass
    return []


def compute_facts(device: Any) -> dict[str, Any]:
    """What decides the bits of a torch computation on `device` (a torch.device or "cpu", "cuda:1", ...)."""
    import torch

    device = str(device)
    kind = device.split(":")[0]
    if kind == "cuda":
        index = torch.device(device).index or 0
        return {"device": "cuda", "gpu": torch.cuda.get_device_name(index), "cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version()}
    if kind != "cpu":
        return {"device": kind}
    return {"device": "cpu", "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
            or "all", "cpu_isa_flags": cpu_isa_flags()}
