"""Device and mixed-precision selection, so the same code runs on a laptop CPU and a GPU node."""

from __future__ import annotations

import contextlib
import os

import torch

from mminilm.training import PRECISIONS


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" picks this process's CUDA device (LOCAL_RANK under torchrun), else MPS, else CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"--device {name!r} is not a torch device name (expected auto, cpu, cuda, cuda:N, mps)") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name} asked for CUDA, but no CUDA device is available here")
    return device


# The CPU's bf16 units, by the name of torch's (private) check for each.
CPU_BF16_CHECKS = {"amx_tile": "_is_amx_tile_supported", "avx512_bf16": "_is_avx512_bf16_supported"}


def cpu_bf16_units() -> dict[str, bool]:
    """Which bf16 units this CPU has: AMX tiles (Intel Sapphire Rapids and later), AVX512-BF16
    (e.g. AMD EPYC with AVX-512, Intel Cooper Lake). A check this torch lacks counts as absent."""
    units = {}
    for unit, name in CPU_BF16_CHECKS.items():
        check = getattr(torch.cpu, name, None)
        try:
            units[unit] = bool(check()) if check is not None else False
        except RuntimeError:
            units[unit] = False
    return units


def cpu_has_native_bf16() -> bool:
    """True on CPUs whose instructions compute bf16 products (`cpu_bf16_units`); without them
    oneDNN emulates bf16, slower than fp32."""
    return any(cpu_bf16_units().values())


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for `precision` on `device`, or None for plain fp32.

    "auto" means bf16 where the hardware computes it natively: CUDA with bf16 support, and CPUs
    with AMX tiles or AVX512-BF16 (`cpu_has_native_bf16`). On this project's 2-core machines bf16
    made a teacher-forward + student-step 2.7x faster than fp32 with AMX; with AVX512-BF16 (AMD
    EPYC) a distillation step took 0.61x and a fine-tuning step 0.64-0.68x the fp32 time
    (benchmarks/precision_step.py, docs/results/precision_step.json). On other CPUs bf16 is emulated and slower than fp32, so "auto"
    stays fp32 there (`bf16` forces it).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if device.type == "cpu" and cpu_has_native_bf16():
            return torch.bfloat16
        return None
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("precision fp16 is not supported on CPU; use bf16 or fp32")
    return torch.bfloat16 if precision == "bf16" else torch.float16


def precision_used(device: torch.device, precision: str) -> str:
    """What `--precision` means on this device ("auto" -> fp32 or bf16): the numbers depend on
    that, and "auto" resolves differently on a machine with native bf16."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[autocast_dtype(device, precision)]


def autocast_context(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager:
    """torch.autocast for the chosen precision, or a no-op context for fp32."""
    dtype = autocast_dtype(device, precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
