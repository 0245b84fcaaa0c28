"""precision `auto`: bf16 exactly where the CPU computes bf16 products natively."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mminilm.training.precision import autocast_dtype, cpu_bf16_units, cpu_has_native_bf16, precision_used

CPUINFO = Path("/proc/cpuinfo")


@pytest.mark.skipif(not CPUINFO.is_file(), reason="needs Linux's /proc/cpuinfo to know the CPU's flags independently")
def test_auto_means_bf16_exactly_where_the_kernel_reports_amx_or_avx512_bf16():
    # The kernel's flags, read independently of torch: if torch renames its private checks, the
    # detection would silently fall back to fp32 and this fails on a machine that has them.
    flags = {flag for line in CPUINFO.read_text().splitlines() if line.startswith("flags")
             for flag in line.split(":", 1)[1].split()}
    native = bool(flags & {"avx512_bf16", "amx_tile"})
    assert cpu_bf16_units() == {unit: unit in flags for unit in ("amx_tile", "avx512_bf16")}
    assert cpu_has_native_bf16() is native
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, "auto") == (torch.bfloat16 if native else None)
    assert precision_used(cpu, "auto") == ("bf16" if native else "fp32")
    assert precision_used(cpu, "fp32") == "fp32" and precision_used(cpu, "bf16") == "bf16"


def test_fp16_on_cpu_and_unknown_precisions_are_refused():
    with pytest.raises(ValueError, match="fp16 is not supported on CPU"):
        autocast_dtype(torch.device("cpu"), "fp16")
    with pytest.raises(ValueError, match="precision must be one of"):
        autocast_dtype(torch.device("cpu"), "bf17")
