"""On-device benchmark: where the frame budget goes (``edgepad bench``, ``python -m edgepad.bench``).

Needs only numpy and one runtime (onnxruntime or TensorRT) on the device: onnx (FLOP counting, FP16/INT8
variants), torch (seed-method model table), pyrealsense2 (rs.align), matplotlib (plots) and opencv-contrib
(``cv2.rgbd.registerDepth``) are used when present and reported as skipped otherwise.

What it measures (docs/PERFORMANCE.md has the figures and the exact commands):

* **Pipeline**: the real :class:`~edgepad.runtime.pipeline.LivenessPipeline` on a source, after a warm-up, for a
  time budget (or a number of frames). Per stage (:data:`edgepad.types.STAGES`) p50/p90/p99/max of
  ``Decision.latency_ms``; end-to-end latency from the frame timestamp to the decision; sustained fps; dropped
  frames per stream; CPU utilisation, RSS, GPU utilisation/memory; optional outlier clipping reported beside the
  raw figures. Every backend returns host arrays only after its stream is synchronised (TensorRT
  ``cudaStreamSynchronize``, torch ``.cpu()``, ONNX Runtime copies outputs), so the host ``perf_counter_ns``
  timers around a stage are CUDA-synchronised; the component benchmarks call ``torch.cuda.synchronize()`` before
  each timer read when they time torch on a GPU.
* **Components**, side by side in one run: depth registration vs ``rs.align`` on the same frames; model
  inference FP32 vs FP16 vs INT8 per available backend; achieved GFLOP/s against the machine's peak; a model
  table (default model + each seed method's edge configuration).
* **Jetson**: nvpmodel mode, jetson_clocks state, thermal zones, tegrastats power; thermal soak (p99 per minute).

Latency statistics use numpy's linear-interpolation percentiles. Outlier clipping (optional) is one pass of
k-sigma clipping (drop samples with ``|x - mean| > k * std``, k = 3 by default); raw figures are always kept.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from edgepad.errors import ConfigError, EdgePadError, MissingDependencyError, ValidationError
from edgepad.types import STAGES, Reason

log = logging.getLogger(__name__)

SCHEMA = "edgepad.bench/1"
#: pipeline stages excluding the wait for the camera (the pipeline's own cost per frame)
COST_STAGES = tuple(s for s in STAGES if s not in ("capture", "total"))
#: targets on a development CPU and on a Jetson (docs/PERFORMANCE.md)
TARGETS = {"pipeline_over_inference_max": 1.25, "registration_over_rs_align_max": 1.0,
           "peak_fraction_min": 0.40, "jetson_default_model_fp16_ms_max": 2.0, "jetson_e2e_fps_min": 30.0}
PERCENTILES = (50, 90, 99)
#: the pipeline run stops after this long without a frame set
NO_FRAMES_GIVE_UP_S = 15.0


# =============================================================================================== statistics
def latency_stats(values: Iterable[float]) -> dict[str, float | int | None]:
    """p50/p90/p99/max/min/mean/std of latencies (ms) with numpy's linear-interpolation percentiles.

    Args:
        values: samples in ms (non-finite values are ignored).

    Returns:
        ``{"n", "p50", "p90", "p99", "max", "min", "mean", "std"}``; every figure None when there is no sample.
    """
    a = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64).reshape(-1)
    a = a[np.isfinite(a)]
    out: dict[str, float | int | None] = {"n": int(a.size)}
    if a.size == 0:
        out.update({f"p{q}": None for q in PERCENTILES})
        out.update({"max": None, "min": None, "mean": None, "std": None})
        return out
    for q, v in zip(PERCENTILES, np.percentile(a, PERCENTILES)):
        out[f"p{q}"] = float(v)
    out.update({"max": float(a.max()), "min": float(a.min()), "mean": float(a.mean()), "std": float(a.std())})
    return out


def clip_outliers(values: Iterable[float], k: float = 3.0) -> tuple[np.ndarray, int]:
    """One pass of k-sigma clipping.

    Args:
        values: samples.
        k: keep samples with ``|x - mean| <= k * std`` (population std); k > 0.

    Returns:
        (kept samples in their original order, number removed). Constant or empty input is returned unchanged.
    """
    if not (isinstance(k, (int, float)) and k > 0):
        raise ConfigError(f"outlier clipping needs k > 0, got {k!r}", key="clip_outliers")
    a = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64).reshape(-1)
    a = a[np.isfinite(a)]
    if a.size < 3:
        return a, 0
    mu, sd = float(a.mean()), float(a.std())
    if sd == 0.0:
        return a, 0
    keep = np.abs(a - mu) <= k * sd
    return a[keep], int(a.size - keep.sum())


def summarize(values: Iterable[float], clip_k: float | None = None) -> dict[str, Any]:
    """``{"raw": latency_stats}`` plus ``"clipped"`` (with ``removed``) when ``clip_k`` is given."""
    a = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64)
    out: dict[str, Any] = {"raw": latency_stats(a)}
    if clip_k:
        kept, removed = clip_outliers(a, clip_k)
        out["clipped"] = {**latency_stats(kept), "removed": removed, "k_sigma": float(clip_k)}
    return out


# =============================================================================================== FLOPs
def _dims(vi: Any) -> list[int] | None:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    dims = []
    for d in t.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        else:
            dims.append(-1)
    return dims


def count_flops(model: Any, batch: int = 1) -> dict[str, Any]:
    """Multiply-accumulates of the Conv / ConvTranspose / Gemm / MatMul nodes of an ONNX graph.

    ``flops = 2 * macs`` (one multiply + one add per MAC). Element-wise ops, pooling, activations and Q/DQ are not
    counted (a few per cent of a CNN). Shapes come from ONNX shape inference with dynamic axes set to ``batch``.
    Per node: Conv ``N·Cout·∏out_spatial·(Cin/group)·∏kernel``; ConvTranspose ``N·Cin·∏in_spatial·(Cout/group)·
    ∏kernel``; Gemm ``M·N·K``; MatMul ``∏batch·M·N·K`` (numpy broadcasting).

    Args:
        model: ``onnx.ModelProto`` or a path to an ``.onnx`` file (not modified).
        batch: value substituted for dynamic (or unknown) input axes.

    Returns:
        ``{"macs", "flops", "gflops", "params", "by_op": {op: macs}, "nodes": number counted, "uncounted": [matrix
        nodes whose shapes were unknown]}``; ``params`` counts the elements of floating-point and int8 initializers
        with more than one element (weights, biases; int64 shape constants are excluded).

    Raises:
        MissingDependencyError: onnx is not installed.
    """
    from edgepad._optional import require
    onnx = require("onnx")
    if hasattr(model, "graph"):
        m = onnx.ModelProto()
        m.CopyFrom(model)
    else:
        m = onnx.load(str(model))
    init_names = {i.name for i in m.graph.initializer}
    for inp in m.graph.input:
        if inp.name in init_names:
            continue
        for d in inp.type.tensor_type.shape.dim:
            if not (d.HasField("dim_value") and d.dim_value > 0):
                d.Clear()
                d.dim_value = int(batch)
    try:
        m = onnx.shape_inference.infer_shapes(m)
    except Exception as exc:  # a graph ORT runs but onnx cannot infer: count what is known
        log.warning("ONNX shape inference failed (%s); FLOPs may be incomplete", exc)
    shapes: dict[str, list[int]] = {}
    for vi in list(m.graph.input) + list(m.graph.value_info) + list(m.graph.output):
        d = _dims(vi)
        if d is not None:
            shapes[vi.name] = d
    params = 0
    for init in m.graph.initializer:
        shapes[init.name] = [int(x) for x in init.dims]
        n = int(np.prod(init.dims)) if len(init.dims) else 1
        if init.data_type in (1, 10, 11, 16, 3) and n > 1:  # float, float16, double, bfloat16, int8
            params += n
    by_op: dict[str, int] = {}
    uncounted: list[str] = []
    counted = 0
    for node in m.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            continue
        macs = _node_macs(node, shapes)
        if macs is None:
            uncounted.append(node.name or node.op_type)
            continue
        by_op[node.op_type] = by_op.get(node.op_type, 0) + macs
        counted += 1
    macs_total = int(sum(by_op.values()))
    return {"macs": macs_total, "flops": 2 * macs_total, "gflops": 2 * macs_total / 1e9, "params": int(params),
            "by_op": by_op, "nodes": counted, "uncounted": uncounted}


def _known(shape: list[int] | None) -> bool:
    return shape is not None and len(shape) > 0 and all(s > 0 for s in shape)


def _node_macs(node: Any, shapes: Mapping[str, list[int]]) -> int | None:
    ins = [shapes.get(n) if n else None for n in node.input]
    out = shapes.get(node.output[0])
    attrs = {a.name: a for a in node.attribute}
    if node.op_type in ("Conv", "ConvTranspose"):
        x, w = ins[0], ins[1] if len(ins) > 1 else None
        group = int(attrs["group"].i) if "group" in attrs else 1
        if not (_known(w) and _known(x)):
            return None
        kernel = int(np.prod(w[2:]))
        if node.op_type == "Conv":
            if not _known(out):
                return None
            # w: Cout × Cin/group × k...
            return int(out[0] * out[1] * int(np.prod(out[2:])) * w[1] * kernel)
        # ConvTranspose w: Cin × Cout/group × k...
        return int(x[0] * x[1] * int(np.prod(x[2:])) * w[1] * kernel)
    if node.op_type == "Gemm":
        a, b = ins[0], ins[1]
        if not (_known(a) and _known(b)) or len(a) != 2 or len(b) != 2:
            return None
        ta = int(attrs["transA"].i) if "transA" in attrs else 0
        tb = int(attrs["transB"].i) if "transB" in attrs else 0
        m_, k = (a[1], a[0]) if ta else (a[0], a[1])
        n = b[0] if tb else b[1]
        return int(m_ * n * k)
    # MatMul with numpy semantics
    a, b = ins[0], ins[1]
    if not (_known(a) and _known(b)):
        return None
    a2 = [1] + a if len(a) == 1 else a
    b2 = b + [1] if len(b) == 1 else b
    m_, k = a2[-2], a2[-1]
    n = b2[-1]
    batch_a, batch_b = a2[:-2], b2[:-2]
    nb = max(len(batch_a), len(batch_b))
    batch_a = [1] * (nb - len(batch_a)) + batch_a
    batch_b = [1] * (nb - len(batch_b)) + batch_b
    batch = int(np.prod([max(x, y) for x, y in zip(batch_a, batch_b)])) if nb else 1
    return int(batch * m_ * n * k)


# =============================================================================================== peak FLOP rate
@dataclass(frozen=True)
class CpuPeak:
    """Theoretical FP32 peak of this CPU: ``cores × GHz × flop_per_cycle`` (GFLOP/s).

    ``flop_per_cycle`` per core = FMA units × SIMD lanes (FP32) × 2 (an FMA is a multiply and an add).
    """

    model: str
    cores: int
    ghz: float
    ghz_source: str
    isa: str
    fma_units: int
    lanes: int
    flop_per_cycle: int
    gflops: float
    formula: str
    note: str = ""


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        if ":" in line:
            k, _, v = line.partition(":")
            info.setdefault(k.strip().lower(), v.strip())
    return info


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_peak(override_gflops: float | None = None, *, measure_clock: bool = True) -> CpuPeak:
    """Estimate the FP32 peak of the CPUs this process may use.

    Rules (per core, FP32): AVX-512 + FMA: 2 FMA units × 16 lanes (Intel Xeon Scalable, AMD Zen 5; AMD Zen 4
    executes 512-bit FMAs on 256-bit units: 2 × 8); AVX2 + FMA: 2 × 8; AVX: 8-lane add + 8-lane multiply (counted
    as 1 × 8 × 2); SSE2: 1 × 4 × 2; aarch64 NEON: 2 × 4 (Cortex-A78AE of Orin; A57: 1 × 4). Clock: cpufreq
    ``cpuinfo_max_freq`` when present, else ``cpu MHz`` of /proc/cpuinfo (under a hypervisor usually the nominal
    clock; a boost clock makes the true peak higher), or the clock measured by :func:`measure_clock_ghz` when that is
    higher (virtual machines report the nominal clock).

    Args:
        override_gflops: use this peak instead of the estimate (``--peak-gflops``).
        measure_clock: allow the measured clock where cpufreq is absent.
    """
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("features") or "").split())
    model = info.get("model name") or info.get("hardware") or platform.processor() or platform.machine()
    cores = _cores()
    ghz, src = 0.0, "unknown"
    try:
        khz = float(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text().strip())
        ghz, src = khz / 1e6, "cpufreq cpuinfo_max_freq"
    except (OSError, ValueError):
        measured = measure_clock_ghz() if measure_clock else None
        nominal = 0.0
        try:
            nominal = float(info.get("cpu mhz", "0")) / 1000.0
        except ValueError:
            pass
        if measured and measured > nominal:
            ghz, src = measured, (f"measured (dependent-add loop; /proc/cpuinfo says {nominal:.3f} GHz, the "
                                  "nominal clock a hypervisor reports)")
        else:
            ghz, src = nominal, "/proc/cpuinfo cpu MHz (may be the nominal clock: the peak is then a lower bound)"
    vendor = info.get("vendor_id", "")
    family = int(info.get("cpu family", "0") or 0) if (info.get("cpu family") or "0").isdigit() else 0
    machine = platform.machine().lower()
    note = ""
    if machine in ("aarch64", "arm64"):
        part = info.get("cpu part", "")
        if part == "0xd07":  # Cortex-A57 (Jetson Nano/TX2)
            isa, units, lanes = "neon (Cortex-A57)", 1, 4
        else:
            isa, units, lanes = "neon", 2, 4
    elif "avx512f" in flags and "fma" in flags:
        isa, lanes = "avx512+fma", 16
        units = 2
        if vendor == "AuthenticAMD" and family == 25:
            isa, lanes, note = "avx512+fma (Zen 4: 256-bit datapath)", 8, "Zen 4 splits 512-bit FMAs"
    elif "avx2" in flags and "fma" in flags:
        isa, units, lanes = "avx2+fma", 2, 8
    elif "avx" in flags:
        isa, units, lanes = "avx", 1, 8
    else:
        isa, units, lanes = "sse2", 1, 4
    fpc = units * lanes * 2
    ghz = round(ghz, 3)
    gflops = cores * ghz * fpc
    formula = f"{cores} cores × {ghz:.3f} GHz × ({units} FMA × {lanes} lanes × 2) = {gflops:.1f} GFLOP/s"
    if override_gflops:
        gflops = float(override_gflops)
        formula = f"given with --peak-gflops: {gflops:.1f} GFLOP/s (estimate was {formula})"
    return CpuPeak(model, cores, ghz, src, isa, units, lanes, fpc, float(gflops), formula, note)


_CLOCK_C = r"""
#include <stdio.h>
#include <time.h>
int main(void) {
    struct timespec a, b; long x = 0, n = 400000000L;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) { __asm__ volatile("" : "+r"(x)); x += 1; }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.6f %ld\n", (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9, x);
    return 0;
}
"""
_clock_cache: list[float | None] = []


def measure_clock_ghz() -> float | None:
    """Core clock (GHz) from a loop of dependent 1-cycle integer adds compiled with the system C compiler.

    One iteration costs one cycle (the add chain; the loop counter and branch run beside it on any out-of-order
    core), so iterations / second is the clock under load. None without a C compiler (e.g. a bare device).
    Best of 3 runs of 4·10^8 iterations; cached per process.
    """
    if _clock_cache:
        return _clock_cache[0]
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    ghz = None
    if cc:
        with tempfile.TemporaryDirectory(prefix="edgepad-clock-") as tmp:
            src, exe = Path(tmp) / "clock.c", Path(tmp) / "clock"
            src.write_text(_CLOCK_C)
            try:
                r = subprocess.run([cc, "-O1", str(src), "-o", str(exe)], capture_output=True, timeout=60)
                if r.returncode == 0:
                    best = math.inf
                    for _ in range(3):
                        out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60).stdout.split()
                        best = min(best, float(out[0]))
                    ghz = 4e8 / best / 1e9 if best > 0 else None
            except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
                log.info("clock measurement failed: %s", exc)
    _clock_cache.append(ghz)
    return ghz


def blas_gflops(n: int = 1024, repeats: int = 3) -> float:
    """Achieved FP32 GFLOP/s of a numpy ``n×n @ n×n`` (the BLAS the process links): a practical ceiling."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


# =============================================================================================== resources
def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def process_cpu_s() -> float:
    """User + system CPU seconds of this process (all threads), from /proc/self/stat or resource."""
    stat = _read("/proc/self/stat")
    if stat:
        fields = stat[stat.rindex(")") + 2:].split()
        tck = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        return (int(fields[11]) + int(fields[12])) / float(tck)
    t = os.times()
    return t.user + t.system


def system_cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine from /proc/stat (None elsewhere)."""
    text = _read("/proc/stat")
    if not text:
        return None
    vals = [int(v) for v in text.splitlines()[0].split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return sum(vals) - idle, sum(vals)


def rss_mib() -> float | None:
    """Resident set size of this process (MiB)."""
    text = _read("/proc/self/statm")
    if text:
        return int(text.split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    try:
        import resource
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r / 2 ** 20 if sys.platform == "darwin" else r / 1024
    except (ImportError, OSError):
        return None


def peak_rss_mib() -> float | None:
    """Peak resident set size of this process (MiB), from ``getrusage``."""
    try:
        import resource
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r / 2 ** 20 if sys.platform == "darwin" else r / 1024
    except (ImportError, OSError):
        return None


def thermal_zones() -> dict[str, float]:
    """``{zone type: °C}`` from /sys/class/thermal (empty where there are none)."""
    out: dict[str, float] = {}
    for z in sorted(Path("/sys/class/thermal").glob("thermal_zone*")):
        t, kind = _read(z / "temp"), _read(z / "type")
        if t is None:
            continue
        try:
            out[(kind or z.name).strip() or z.name] = int(t.strip()) / 1000.0
        except ValueError:
            continue
    return out


def _run_tool(argv: Sequence[str], timeout_s: float = 10.0) -> dict[str, Any]:
    if shutil.which(argv[0]) is None:
        return {"available": False}
    try:
        r = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"available": True, "error": str(exc)}
    return {"available": True, "rc": r.returncode, "output": (r.stdout + r.stderr).strip()[:4000]}


def nvidia_smi_sample() -> dict[str, float] | None:
    """GPU utilisation (%) and memory used/total (MiB) of GPU 0 via nvidia-smi; None where it is absent."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used,memory.total",
                            "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5)
        util, used, total = (float(v) for v in r.stdout.splitlines()[0].split(","))
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None
    return {"gpu_util_pct": util, "gpu_mem_used_mib": used, "gpu_mem_total_mib": total}


_TEGRA_POWER = re.compile(r"\b([A-Za-z0-9_]+) (\d+)mW/(\d+)mW")
_TEGRA_TEMP = re.compile(r"\b([A-Za-z0-9_]+)@(-?[\d.]+)C")
_TEGRA_GPU = re.compile(r"GR3D_FREQ (\d+)%")
_TEGRA_RAM = re.compile(r"RAM (\d+)/(\d+)MB")


def parse_tegrastats(line: str) -> dict[str, Any]:
    """One tegrastats line → ``{"gpu_util_pct", "ram_used_mib", "power_mw": {rail: mW}, "temp_c": {zone: °C}}``."""
    out: dict[str, Any] = {}
    m = _TEGRA_GPU.search(line)
    if m:
        out["gpu_util_pct"] = float(m.group(1))
    m = _TEGRA_RAM.search(line)
    if m:
        out["ram_used_mib"], out["ram_total_mib"] = float(m.group(1)), float(m.group(2))
    power = {k: float(v) for k, v, _ in _TEGRA_POWER.findall(line)}
    if power:
        out["power_mw"] = power
    temps = {k: float(v) for k, v in _TEGRA_TEMP.findall(line)}
    if temps:
        out["temp_c"] = temps
    return out


class ResourceMonitor:
    """Samples RSS, machine CPU load, GPU (nvidia-smi / tegrastats) and temperatures in a background thread.

    Args:
        interval_s: sampling period.
        gpu: sample nvidia-smi / tegrastats when the tools exist.
    """

    def __init__(self, interval_s: float = 0.5, gpu: bool = True) -> None:
        self.interval_s = float(interval_s)
        self.samples: list[dict[str, Any]] = []
        self._gpu = gpu and shutil.which("nvidia-smi") is not None
        self._tegra_cmd = shutil.which("tegrastats") if gpu else None
        self._tegra: subprocess.Popen | None = None
        self._tegra_last: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._cpu0 = 0.0
        self._sys0: tuple[int, int] | None = None

    def __enter__(self) -> "ResourceMonitor":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._t0, self._cpu0, self._sys0 = time.perf_counter(), process_cpu_s(), system_cpu_ticks()
        if self._tegra_cmd:
            try:
                self._tegra = subprocess.Popen([self._tegra_cmd, "--interval", str(int(self.interval_s * 1000))],
                                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                threading.Thread(target=self._read_tegra, daemon=True, name="bench-tegrastats").start()
            except OSError as exc:
                log.info("tegrastats not usable: %s", exc)
                self._tegra = None
        self._thread = threading.Thread(target=self._loop, daemon=True, name="bench-resources")
        self._thread.start()

    def _read_tegra(self) -> None:
        proc = self._tegra
        if proc is None or proc.stdout is None:
            return
        for line in proc.stdout:
            self._tegra_last = parse_tegrastats(line)

    def _sample(self) -> dict[str, Any]:
        s: dict[str, Any] = {"t_s": time.perf_counter() - self._t0, "rss_mib": rss_mib(),
                             "cpu_s": process_cpu_s()}
        ticks = system_cpu_ticks()
        if ticks is not None:
            s["sys_ticks"] = ticks
        if self._gpu:
            g = nvidia_smi_sample()
            if g:
                s.update(g)
        if self._tegra_last:
            s["tegra"] = dict(self._tegra_last)
        return s

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.samples.append(self._sample())

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=10)
        self._thread = None
        self.samples.append(self._sample())
        if self._tegra is not None:
            self._tegra.terminate()
            try:
                self._tegra.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self._tegra.kill()
            self._tegra = None

    def summary(self) -> dict[str, Any]:
        """CPU utilisation (process, in cores and % of the usable cores; machine-wide %), RSS, GPU and power."""
        if not self.samples:
            return {}
        last = self.samples[-1]
        wall = max(last["t_s"], 1e-9)
        cores = _cores()
        cpu_s = last["cpu_s"] - self._cpu0
        out: dict[str, Any] = {"wall_s": wall, "process_cpu_s": cpu_s, "process_cpu_cores": cpu_s / wall,
                               "process_cpu_pct_of_machine": 100.0 * cpu_s / wall / cores, "cores": cores}
        if self._sys0 is not None and "sys_ticks" in last:
            busy = last["sys_ticks"][0] - self._sys0[0]
            total = max(1, last["sys_ticks"][1] - self._sys0[1])
            out["machine_cpu_busy_pct"] = 100.0 * busy / total
        rss = [s["rss_mib"] for s in self.samples if s.get("rss_mib") is not None]
        if rss:
            out["rss_mib"] = {"mean": float(np.mean(rss)), "max": float(np.max(rss)), "last": float(rss[-1])}
        out["peak_rss_mib"] = peak_rss_mib()
        util = [s["gpu_util_pct"] for s in self.samples if "gpu_util_pct" in s]
        mem = [s["gpu_mem_used_mib"] for s in self.samples if "gpu_mem_used_mib" in s]
        if util:
            out["gpu_util_pct"] = {"mean": float(np.mean(util)), "max": float(np.max(util))}
        if mem:
            out["gpu_mem_used_mib"] = {"mean": float(np.mean(mem)), "max": float(np.max(mem))}
        tegra = [s["tegra"] for s in self.samples if "tegra" in s]
        if tegra:
            gu = [t["gpu_util_pct"] for t in tegra if "gpu_util_pct" in t]
            if gu:
                out["gpu_util_pct"] = {"mean": float(np.mean(gu)), "max": float(np.max(gu)), "source": "tegrastats"}
            rails: dict[str, list[float]] = {}
            for t in tegra:
                for k, v in t.get("power_mw", {}).items():
                    rails.setdefault(k, []).append(v)
            if rails:
                out["power_mw"] = {k: {"mean": float(np.mean(v)), "max": float(np.max(v))} for k, v in rails.items()}
            temps: dict[str, list[float]] = {}
            for t in tegra:
                for k, v in t.get("temp_c", {}).items():
                    temps.setdefault(k, []).append(v)
            if temps:
                out["tegra_temp_c"] = {k: {"mean": float(np.mean(v)), "max": float(np.max(v))}
                                       for k, v in temps.items()}
        if not (util or mem or tegra):
            out["gpu"] = "not measured: no nvidia-smi or tegrastats here"
        torch = sys.modules.get("torch")
        try:
            if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
                out["torch_cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
        except Exception:  # noqa: BLE001 - optional
            pass
        return out


# =============================================================================================== device
def device_info(peak: CpuPeak | None = None) -> dict[str, Any]:
    """Host, CPU (with the peak estimate), GPU and, on a Jetson, power mode, clocks and temperatures."""
    peak = peak or cpu_peak()
    out: dict[str, Any] = {"hostname": platform.node(), "platform": platform.platform(),
                           "machine": platform.machine(), "cpu": asdict(peak), "thermal_c": thermal_zones()}
    smi = _run_tool(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                     "--format=csv,noheader"])
    out["nvidia_smi"] = smi.get("output") if smi.get("available") else "not available"
    tegra = _read("/etc/nv_tegra_release")
    model = _read("/proc/device-tree/model")
    jetson = tegra is not None or (model is not None and "jetson" in model.lower())
    out["jetson"] = jetson
    if jetson:
        out["jetson_release"] = (tegra or "").splitlines()[0] if tegra else None
        out["jetson_model"] = (model or "").strip("\x00 \n")
        q = _run_tool(["nvpmodel", "-q"])
        out["nvpmodel"] = q.get("output") if q.get("available") else "nvpmodel not found"
        c = _run_tool(["jetson_clocks", "--show"])
        out["jetson_clocks"] = c.get("output") if c.get("available") else "jetson_clocks not found"
    return out


def versions() -> dict[str, Any]:
    """``edgepad.doctor.collect()`` (package versions, devices, usable commands); never raises."""
    try:
        from edgepad.doctor import collect
        doc = collect()
        doc["commands"] = {k: bool(v[0]) for k, v in doc.get("commands", {}).items()}
        return doc
    except Exception as exc:  # noqa: BLE001 - versions are informational
        return {"error": f"{type(exc).__name__}: {exc}", "python": platform.python_version(),
                "numpy": np.__version__}


def _manifest_info(path: Path) -> dict[str, Any]:
    from edgepad.engines.manifest import manifest_path, read_manifest, sha256_file
    info: dict[str, Any] = {"path": str(path), "sha256": sha256_file(path) if path.exists() else None}
    mp = manifest_path(path)
    info["manifest_path"] = str(mp)
    info["manifest_sha256"] = sha256_file(mp) if mp.exists() else None
    try:
        man = read_manifest(path)
        info.update({"model": man.model, "precision": man.precision, "format": man.format,
                     "modalities": [m.value for m in man.modalities], "onnx_sha256": man.onnx_sha256,
                     "artifact_sha256": man.artifact_sha256, "threshold": man.threshold,
                     "inputs": {k: list(v.shape) for k, v in man.inputs.items()}})
    except EdgePadError as exc:
        info["manifest_error"] = str(exc)
    return info


# =============================================================================================== configuration
@dataclass(frozen=True)
class BenchConfig:
    """Settings of one benchmark run (recorded in the JSON).

    Attributes:
        source: source URI (``synthetic://default``, a recording, ``realsense://``).
        model: model artifact (``.onnx``/``.engine``/``.pt`` with its manifest); None = the embedded default.
        backend: ``auto|onnxruntime|trt|torch``.
        warmup_s: warm-up time whose decisions are discarded (at least one decision is).
        budget_s: measurement time; frames: stop after this many measured decisions (0 = budget only).
        clip_k: k of the k-sigma outlier clipping reported beside raw figures (None = off).
        locator: face locator (``haar``, ``truth``, ``fixed:x,y,w,h``).
        threads: ONNX Runtime intra-op threads (None = all cores).
        threaded: run the pipeline's threaded mode.
        components: run the component benchmarks; component_s: time per component measurement.
        soak_min: thermal soak length in minutes (0 = off; replaces ``budget_s``); soak_bucket_s: bucket length.
        peak_gflops: override of the CPU peak estimate.
        results: metrics.json files of ``edgepad evaluate`` runs (ACER in the model table).
        table_models: further ONNX artifacts for the model table.
        seed_models: include the seed methods' edge configurations in the model table (needs torch).
        int8_samples: calibration feeds used for the INT8 timing variant.
        plots: write PNG plots (needs matplotlib).
    """

    source: str = "synthetic://default"
    model: str | None = None
    backend: str = "auto"
    warmup_s: float = 3.0
    budget_s: float = 20.0
    frames: int = 0
    clip_k: float | None = None
    locator: str = "haar"
    threads: int | None = None
    threaded: bool = False
    components: bool = False
    component_s: float = 2.0
    soak_min: float = 0.0
    soak_bucket_s: float = 60.0
    peak_gflops: float | None = None
    results: tuple[str, ...] = ()
    table_models: tuple[str, ...] = ()
    seed_models: bool = True
    int8_samples: int = 16
    plots: bool = True

    def __post_init__(self) -> None:
        if self.backend not in ("auto", "onnxruntime", "trt", "torch"):
            from edgepad.config import suggest
            raise ConfigError(f"unknown backend {self.backend!r}", key="backend",
                              suggestions=suggest(self.backend, ("auto", "onnxruntime", "trt", "torch")))
        if self.warmup_s < 0 or self.budget_s <= 0 or self.frames < 0:
            raise ConfigError("need warmup_s >= 0, budget_s > 0 and frames >= 0", key="budget_s")
        if self.soak_min < 0 or self.soak_bucket_s <= 0 or self.component_s <= 0:
            raise ConfigError("need soak_min >= 0, soak_bucket_s > 0 and component_s > 0", key="soak_min")
        if self.clip_k is not None and not self.clip_k > 0:
            raise ConfigError("clip_outliers k must be > 0", key="clip_outliers")


def resolve_model(model: str | Path | None) -> Path:
    """The artifact to benchmark: ``model`` or the embedded default (ConfigError when neither exists)."""
    from edgepad.assets import default_model_path
    path = Path(model) if model else default_model_path()
    if not path.exists():
        what = "the embedded default model" if not model else "model"
        raise ConfigError(f"{what} {path} does not exist; pass --model PATH (an .onnx/.engine/.pt with its "
                          "manifest)", key="model")
    return path


# =============================================================================================== pipeline
def _load_backend(path: Path, kind: str, threads: int | None) -> Any:
    from edgepad.engines.backend import load_backend
    from edgepad.engines.formats import format_by_kind, format_for
    fmt = format_for(path) if kind == "auto" else format_by_kind(kind)
    opts: dict[str, Any] = {}
    if threads and fmt.kind == "onnxruntime":
        opts["threads"] = int(threads)
    return load_backend(path, kind, **opts)


def run_pipeline(config: BenchConfig, model: Path) -> dict[str, Any]:
    """Run the liveness pipeline on ``config.source`` and measure it (see the module docstring).

    Returns:
        the ``pipeline`` section of the result (stage stats, e2e, fps, drops, verdicts, series, resources, soak).
    """
    from edgepad.runtime.pipeline import PipelineConfig, open_pipeline
    backend = _load_backend(model, config.backend, config.threads)
    pcfg = PipelineConfig(threaded=config.threaded)
    pipe = open_pipeline(config.source, backend, locator=config.locator, config=pcfg)
    budget_s = config.soak_min * 60.0 if config.soak_min else config.budget_s
    lat: dict[str, list[float]] = {s: [] for s in STAGES}
    e2e: list[float] = []
    t_rel: list[float] = []
    verdicts: dict[str, int] = {}
    reasons: dict[str, int] = {}
    seq_last: dict[str, int] = {}
    seq_gaps: dict[str, int] = {}
    timeouts = 0
    warm_decisions = 0
    e2e_clock: str | None = None
    ended = "budget"
    soak_temps: list[tuple[float, dict[str, float]]] = []
    monitor = ResourceMonitor()
    with pipe:
        t_start = time.perf_counter()
        t_meas: float | None = None
        next_temp = 0.0
        last_real = t_start
        for d in pipe.decisions():
            now = time.perf_counter()
            now_mono = time.monotonic_ns()
            if d.score is None and Reason.NO_FRAMES in d.reasons:
                timeouts += t_meas is not None
                if now - last_real > NO_FRAMES_GIVE_UP_S:
                    ended = "no_frames"
                    break
                continue
            last_real = now
            if t_meas is None:
                warm_decisions += 1
                if now - t_start >= config.warmup_s:
                    t_meas = time.perf_counter()
                    monitor.start()
                continue
            if e2e_clock is None:
                e2e_clock = "host" if abs(d.timestamp_ns - now_mono) < 10_000_000_000 else "pipeline"
            for s in STAGES:
                lat[s].append(float(d.latency_ms.get(s, 0.0)))
            e2e.append((now_mono - d.timestamp_ns) / 1e6 if e2e_clock == "host" else float(d.latency_ms["total"]))
            t_rel.append(now - t_meas)
            verdicts[d.verdict.value] = verdicts.get(d.verdict.value, 0) + 1
            for r in d.reasons:
                reasons[r.value] = reasons.get(r.value, 0) + 1
            fs = pipe.last_frameset if not config.threaded else None
            if fs is not None:
                for m, f in fs.frames.items():
                    k = m.value
                    if k in seq_last and f.sequence > seq_last[k] + 1:
                        seq_gaps[k] = seq_gaps.get(k, 0) + f.sequence - seq_last[k] - 1
                    seq_gaps.setdefault(k, 0)
                    seq_last[k] = max(f.sequence, seq_last.get(k, f.sequence))
            if config.soak_min and now - t_meas >= next_temp:
                soak_temps.append((now - t_meas, thermal_zones()))
                next_temp += config.soak_bucket_s
            if config.frames and len(t_rel) >= config.frames:
                ended = "frames"
                break
            if now - t_meas >= budget_s:
                ended = "budget"
                break
        else:
            ended = "end_of_stream"
        elapsed = time.perf_counter() - t_meas if t_meas is not None else 0.0
        if t_meas is not None:
            monitor.stop()
        sync_stats = _sync_stats(pipe.capture)
        source_drops = _source_drops(pipe.capture)
        pipe_stats = pipe.stats.to_dict()
        providers = list(getattr(backend, "providers_used", []) or [])
    n = len(t_rel)
    if n == 0:
        raise ValidationError(f"no decision was measured ({ended} after {warm_decisions} warm-up decisions): raise "
                              "--budget-s / lower --warmup-s, or check the source", report={"ended": ended})
    stages = {s: summarize(lat[s], config.clip_k) for s in STAGES}
    cost = np.sum([np.asarray(lat[s]) for s in COST_STAGES], axis=0)
    out: dict[str, Any] = {
        "decisions": n, "warmup_decisions": warm_decisions, "elapsed_s": elapsed, "ended_by": ended,
        "fps": n / elapsed if elapsed > 0 else None, "timeouts": timeouts,
        "backend": getattr(backend, "kind", config.backend), "providers": providers,
        "stages": stages, "cost": summarize(cost, config.clip_k),
        "e2e": {**summarize(e2e, config.clip_k), "clock": e2e_clock,
                "definition": ("host monotonic now at decision − frame timestamp (frame exposure → decision)"
                               if e2e_clock == "host" else
                               "the source's timestamps are not on the host clock (offline/non-realtime source): "
                               "capture read start → decision (stage 'total')")},
        "verdicts": verdicts, "reasons": reasons,
        "drops": {"sync": sync_stats, "source_queue": source_drops, "sequence_gaps": seq_gaps,
                  "pipeline": pipe_stats.get("dropped", {})},
        "pipeline_stats": pipe_stats,
        "series": {"t_s": [round(t, 4) for t in t_rel], **{s: [round(v, 4) for v in lat[s]] for s in STAGES},
                   "e2e": [round(v, 4) for v in e2e]},
        "resources": monitor.summary(),
    }
    if config.soak_min:
        out["soak"] = soak_buckets(t_rel, lat["total"], lat["infer"], config.soak_bucket_s, soak_temps)
    return out


def soak_buckets(t_s: Sequence[float], total_ms: Sequence[float], infer_ms: Sequence[float], bucket_s: float,
                 temps: Sequence[tuple[float, Mapping[str, float]]] = ()) -> list[dict[str, Any]]:
    """Per-bucket (per minute by default) p50/p99 of total and inference latency, fps and temperatures."""
    t = np.asarray(t_s, np.float64)
    tot, inf = np.asarray(total_ms, np.float64), np.asarray(infer_ms, np.float64)
    out = []
    if t.size == 0:
        return out
    nb = int(t.max() // bucket_s) + 1
    for b in range(nb):
        sel = (t >= b * bucket_s) & (t < (b + 1) * bucket_s)
        if not sel.any():
            continue
        row: dict[str, Any] = {"bucket": b, "start_s": b * bucket_s, "decisions": int(sel.sum()),
                               "fps": float(sel.sum() / bucket_s),
                               "total_p50": float(np.percentile(tot[sel], 50)),
                               "total_p99": float(np.percentile(tot[sel], 99)),
                               "infer_p50": float(np.percentile(inf[sel], 50)),
                               "infer_p99": float(np.percentile(inf[sel], 99))}
        tz = [z for ts, z in temps if b * bucket_s <= ts < (b + 1) * bucket_s]
        if tz:
            row["temp_c"] = tz[0]
        out.append(row)
    return out


def _sync_stats(capture: Any) -> dict[str, Any]:
    sync = getattr(capture, "sync", None)
    stats = getattr(sync, "stats", None)
    if stats is None:
        return {}
    return stats.to_dict() if hasattr(stats, "to_dict") else dict(stats)


def _source_drops(capture: Any) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for s in getattr(capture, "sources", ()) or ():
        d = getattr(s, "dropped", None)
        if isinstance(d, Mapping):
            out[getattr(s, "uri", "source")] = {str(k): int(v) for k, v in d.items()}
    return out


# =============================================================================================== components
def _have(module: str) -> bool:
    from edgepad._optional import available
    return available(module)


def time_calls(fn: Any, budget_s: float, *, warmup: int = 3, min_iters: int = 10, max_iters: int = 10_000,
               sync: Any = None) -> list[float]:
    """Call ``fn()`` ``warmup`` times, then until ``budget_s`` (and at least ``min_iters`` calls); ms per call.

    Args:
        sync: called before each timer read (``torch.cuda.synchronize`` for GPU work), or None.
    """
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    out: list[float] = []
    t_end = time.perf_counter() + budget_s
    while (len(out) < min_iters or time.perf_counter() < t_end) and len(out) < max_iters:
        t0 = time.perf_counter_ns()
        fn()
        if sync:
            sync()
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def bench_backend(artifact: Path, kind: str, budget_s: float, *, providers: Sequence[str] | None = None,
                  threads: int | None = None) -> dict[str, Any]:
    """Latency of ``backend.infer`` on deterministic feeds (warm-up, then ``budget_s``).

    Returns:
        ``{"kind", "providers", "latency": latency_stats}`` or ``{"skipped": why}``.
    """
    from edgepad.engines.backend import load_backend
    from edgepad.engines.export import example_feeds
    opts: dict[str, Any] = {}
    if kind == "onnxruntime":
        opts["spin"] = True  # back-to-back calls: the model's own speed (the pipeline's backend does not spin)
        if threads:
            opts["threads"] = int(threads)
        if providers:
            opts["providers"] = list(providers)
    try:
        be = load_backend(artifact, kind, **opts)
        be.activate()
    except MissingDependencyError as exc:
        return {"skipped": f"missing dependency: {exc}"}
    except Exception as exc:  # noqa: BLE001 - e.g. an op without a CPU kernel in this precision
        return {"skipped": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    try:
        feeds = example_feeds(be.manifest.inputs)
        try:
            be.infer(feeds)
        except Exception as exc:  # noqa: BLE001
            return {"skipped": f"infer failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
        ms = time_calls(lambda: be.infer(feeds), budget_s)
        return {"kind": be.kind, "providers": list(getattr(be, "providers_used", []) or []),
                "precision": be.manifest.precision, "latency": latency_stats(ms)}
    finally:
        be.deactivate()


def make_variants(fp32_onnx: Path, out_dir: Path, int8_samples: int = 16) -> dict[str, Any]:
    """FP16 and INT8 (Q/DQ) ONNX of an FP32 ONNX through :mod:`edgepad.engines.quantize` (for timing only).

    The INT8 variant is calibrated on ``int8_samples`` deterministic normal feeds: its timing is representative,
    its accuracy is not (deployable INT8 models come from ``edgepad export --int8`` with real calibration data).

    Returns:
        ``{"fp32": path, "fp16": path | {"skipped": why}, "int8": path | {"skipped": why}}``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {"fp32": fp32_onnx}
    try:
        from edgepad.engines.quantize import quantize_int8, to_fp16
        from edgepad._optional import require
        require("onnx")
    except MissingDependencyError as exc:
        return {"fp32": fp32_onnx, "fp16": {"skipped": str(exc)}, "int8": {"skipped": str(exc)}}
    stem = fp32_onnx.stem
    try:
        dst = out_dir / f"{stem}.fp16.onnx"
        to_fp16(fp32_onnx, dst)
        res["fp16"] = dst
    except Exception as exc:  # noqa: BLE001
        res["fp16"] = {"skipped": f"to_fp16 failed: {type(exc).__name__}: {str(exc)[:200]}"}
    try:
        from edgepad.engines.export import example_feeds
        from edgepad.engines.manifest import read_manifest
        inputs = read_manifest(fp32_onnx).inputs
        feeds = [example_feeds(inputs, seed=i) for i in range(int8_samples)]
        dst = out_dir / f"{stem}.int8.onnx"
        qlog = logging.getLogger("edgepad.engines.quantize")
        level = qlog.level
        qlog.setLevel(logging.ERROR)   # the small-calibration-set warning is expected here
        try:
            quantize_int8(fp32_onnx, dst, feeds)
        finally:
            qlog.setLevel(level)
        res["int8"] = dst
    except Exception as exc:  # noqa: BLE001
        res["int8"] = {"skipped": f"quantize_int8 failed: {type(exc).__name__}: {str(exc)[:200]}"}
    return res


def _ort_targets() -> list[tuple[str, list[str] | None]]:
    """(label, providers) for each ONNX Runtime execution provider worth timing here."""
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    avail = ort.get_available_providers()
    out: list[tuple[str, list[str] | None]] = [("onnxruntime-cpu", ["CPUExecutionProvider"])]
    if "CUDAExecutionProvider" in avail:
        out.append(("onnxruntime-cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"]))
    return out


def bench_precisions(artifact: Path, out_dir: Path, budget_s: float, *, threads: int | None = None,
                     int8_samples: int = 16, trt: bool | None = None) -> dict[str, Any]:
    """Inference latency of FP32 / FP16 / INT8 per available backend for one model.

    ONNX Runtime (CPU, and CUDA where this build has it) times the ONNX variants; TensorRT (where importable) builds
    and times an engine per precision; a non-ONNX artifact is timed as it is on its own backend.

    Returns:
        ``{"variants": {precision: path or skipped}, "results": {"<backend>/<precision>": bench_backend dict}}``.
    """
    from edgepad.engines.formats import format_for
    fmt = format_for(artifact)
    results: dict[str, Any] = {}
    if fmt.kind != "onnxruntime":
        results[f"{fmt.kind}/as-built"] = bench_backend(artifact, fmt.kind, budget_s, threads=threads)
        return {"variants": {"as-built": str(artifact)}, "results": results}
    variants = make_variants(artifact, out_dir, int8_samples)
    targets = _ort_targets()
    if not targets:
        results["onnxruntime"] = {"skipped": "onnxruntime not installed"}
    for prec, path in variants.items():
        if not isinstance(path, Path):
            for label, _ in targets or [("onnxruntime-cpu", None)]:
                results[f"{label}/{prec}"] = path
            continue
        for label, providers in targets:
            results[f"{label}/{prec}"] = bench_backend(path, "onnxruntime", budget_s, providers=providers,
                                                       threads=threads)
    from edgepad._optional import available
    use_trt = available("tensorrt") if trt is None else trt
    if use_trt:
        for prec, path in variants.items():
            if not isinstance(path, Path):
                results[f"tensorrt/{prec}"] = path
                continue
            try:
                from edgepad.engines.build import BuildConfig, build_engine
                engine, _ = build_engine(path, BuildConfig(precision=prec), cache=out_dir / "engines")
                results[f"tensorrt/{prec}"] = bench_backend(engine, "trt", budget_s)
            except Exception as exc:  # noqa: BLE001
                results[f"tensorrt/{prec}"] = {"skipped": f"{type(exc).__name__}: {str(exc)[:200]}"}
    else:
        results["tensorrt"] = {"skipped": "tensorrt not installed here"}
    return {"variants": {k: (str(v) if isinstance(v, Path) else v) for k, v in variants.items()},
            "results": results}


def bench_registration(source: str, repeats: int = 20) -> dict[str, Any]:
    """Our depth registration vs ``rs.align`` (and ``cv2.rgbd.registerDepth`` when present) on the same frames.

    Two frame sets: one depth frame of ``source`` with its rig (depth → rgb), and the D435-like 640×480 scene of
    :func:`edgepad.drivers.registration.d435_like_scene` (real factory calibration). Each is timed with the
    algorithm rs.align runs (``semantics="align"``); when the source's lenses have Brown-Conrady coefficients
    (which rs.align ignores) the runtime's ``"rsutil"`` registration is timed too (``source_rsutil``).
    """
    from edgepad._optional import available
    from edgepad.drivers import registration as R
    have_rs = available("pyrealsense2")
    out: dict[str, Any] = {"librealsense": "present" if have_rs else "skipped: pyrealsense2 not installed"}
    cases: list[tuple[str, str, Any, Any, Any]] = []
    try:
        depth, target, ext = _source_depth(source)
        cases.append(("source", "align", depth, target, ext))
        if any(i.distortion == "brown_conrady" and i.has_distortion for i in (depth.intrinsics, target)):
            cases.append(("source_rsutil", "rsutil", depth, target, ext))
    except Exception as exc:  # noqa: BLE001
        out["source"] = {"skipped": f"{type(exc).__name__}: {exc}"}
    cases.append(("d435_like", "align", *R.d435_like_scene()))
    for name, sem, depth, target, ext in cases:
        try:
            res = R.time_against_rs_align(depth, target, ext, repeats=repeats, with_librealsense=have_rs, semantics=sem)
        except Exception as exc:  # noqa: BLE001
            res = {"skipped": f"{type(exc).__name__}: {exc}"}
        res["opencv_rgbd"] = _bench_cv2_rgbd(depth, target, ext, repeats, sem)
        out[name] = res
    return out


def _source_depth(source: str) -> tuple[Any, Any, Any]:
    from edgepad.drivers.capture import open_capture
    from edgepad.types import Modality
    with open_capture(source, register=False) as cap:
        for _ in range(20):
            fs = cap.read(5.0)
            if fs is not None and fs.get(Modality.DEPTH) is not None and cap.rig is not None:
                rig = cap.rig
                if Modality.RGB not in rig.intrinsics:
                    break
                depth = fs[Modality.DEPTH]
                return depth, rig.intrinsics[Modality.RGB], rig.extrinsics(Modality.DEPTH, Modality.RGB)
    raise ConfigError(f"{source} gave no depth frame with a depth→rgb rig", key="source")


def _bench_cv2_rgbd(depth: Any, target: Any, ext: Any, repeats: int, semantics: str = "align") -> dict[str, Any]:
    """Time ``cv2.rgbd.registerDepth`` (opencv-contrib) on the same frame and compare its output with ours.

    OpenCV splats each depth pixel to its nearest target pixel (``depthDilation=True`` also fills the 2×2
    neighbourhood, for a coverage comparable to ours) and writes the z of the *target* camera; rs.align and ours
    fill each pixel's projected footprint with the source z. So agreement is reported as depth differences in mm
    where both have depth, not as identical pixels.
    """
    try:
        import cv2
    except ImportError:
        return {"skipped": "opencv not installed"}
    if not hasattr(cv2, "rgbd") or not hasattr(cv2.rgbd, "registerDepth"):
        return {"skipped": "cv2.rgbd.registerDepth needs opencv-contrib-python (not installed)"}
    from edgepad.drivers.registration import register_depth
    di, ti = depth.intrinsics, target

    def kmat(i: Any) -> np.ndarray:
        return np.array([[i.fx, 0, i.cx], [0, i.fy, i.cy], [0, 0, 1]], np.float64)
    rt = np.eye(4)
    rt[:3, :3] = np.asarray(ext.r, np.float64).reshape(3, 3)
    rt[:3, 3] = np.asarray(ext.t, np.float64)
    z_mm = np.round(depth.data.astype(np.float64) * depth.depth_scale_m * 1000).astype(np.uint16)
    dist = np.asarray(getattr(ti, "dist5", (0, 0, 0, 0, 0)), np.float64)

    def call() -> Any:
        return cv2.rgbd.registerDepth(kmat(di), kmat(ti), dist, rt, z_mm, (ti.width, ti.height), depthDilation=True)
    ms = time_calls(call, 0.0, warmup=2, min_iters=repeats)
    theirs = call().astype(np.float64)
    ours = register_depth(depth, ti, ext, semantics=semantics).data.astype(np.float64) * depth.depth_scale_m * 1e3
    both = (theirs > 0) & (ours > 0)
    diff = np.abs(theirs[both] - ours[both]) if both.any() else np.zeros(1)
    return {"ms": float(np.median(ms)), "latency": latency_stats(ms), "opencv": cv2.__version__,
            "coverage": float(np.mean(theirs > 0)), "ours_coverage": float(np.mean(ours > 0)),
            "abs_diff_mm_p50": float(np.median(diff)), "abs_diff_mm_p90": float(np.percentile(diff, 90)),
            "note": "cv2.rgbd.registerDepth(depthDilation=True): nearest-pixel splat, target-camera z, no "
                    "distortion of the depth camera; differences are in mm where both have depth"}


def _results_acer(results: Sequence[str]) -> list[dict[str, Any]]:
    out = []
    for p in results:
        try:
            doc = json.loads(Path(p).read_text())
            meta = doc.get("model", {})
            acer = doc["result"]["eval"]["acer"]
            out.append({"path": str(p), "model": meta.get("model"), "onnx_sha256": meta.get("onnx_sha256"),
                        "artifact_sha256": meta.get("artifact_sha256"), "acer": float(acer),
                        "protocol": doc.get("protocol"), "sub_protocol": doc.get("sub_protocol")})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("results file %s unusable: %s", p, exc)
    return out


def _acer_for(info: Mapping[str, Any], acers: Sequence[Mapping[str, Any]]) -> Any:
    """The ACER of an evaluation of exactly this model (same ONNX or artifact sha256). Never by architecture
    name: an untrained seed configuration shares its name with trained models of that architecture."""
    for a in acers:
        for key in ("onnx_sha256", "artifact_sha256"):
            if a.get(key) and a.get(key) == info.get(key):
                return {"acer": a["acer"], "from": a["path"], "protocol": a.get("protocol")}
    return "not measured"


def seed_model_onnx(out_dir: Path, size_px: int = 112) -> dict[str, Any]:
    """Export each seed method's edge configuration (untrained weights; timing only) to ONNX. Needs torch."""
    from edgepad._optional import available
    if not (available("torch") and available("onnx")):
        return {"skipped": "torch/onnx not installed: export the seed models on a development machine "
                           "(edgepad export) and pass them with --table-model"}
    from edgepad.engines.export import export_onnx
    from edgepad.models.registry import create_model, list_models
    from edgepad.preprocess import default_input_specs
    import torch
    torch.manual_seed(0)
    out_dir.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {}
    specs = default_input_specs(size_px)
    for name in list_models():
        try:
            model = create_model(name)
            mods = list(model.edgepad_spec["model_kwargs"]["modalities"])
            params = int(sum(p.numel() for p in model.parameters()))
            path = out_dir / f"seed-{name}.onnx"
            export_onnx(model, path, inputs={m: specs[m] for m in mods}, threshold=0.5,
                        threshold_criterion="bpcer20", training={"note": "untrained: bench timing only"})
            res[name] = {"path": path, "torch_params": params, "config": model.edgepad_spec}
        except Exception as exc:  # noqa: BLE001
            res[name] = {"skipped": f"{type(exc).__name__}: {str(exc)[:200]}"}
    return res


def model_row(name: str, artifact: Path, out_dir: Path, budget_s: float, *, threads: int | None,
              int8_samples: int, acers: Sequence[Mapping[str, Any]], extra: Mapping[str, Any] | None = None
              ) -> dict[str, Any]:
    """One model-table row: parameters, GFLOPs per decision, latency per backend/precision, ACER."""
    info = _manifest_info(artifact)
    row: dict[str, Any] = {"name": name, "artifact": str(artifact), "model": info.get("model"),
                           "modalities": info.get("modalities"), "inputs": info.get("inputs")}
    if extra:
        row.update(extra)
    try:
        fl = count_flops(artifact)
        row.update({"params": fl["params"], "gflops": fl["gflops"], "flops_uncounted": fl["uncounted"]})
    except MissingDependencyError as exc:
        row.update({"params": None, "gflops": None, "flops_note": str(exc)})
    prec = bench_precisions(artifact, out_dir / "variants", budget_s, threads=threads, int8_samples=int8_samples)
    row["latency_ms"] = {k: (v["latency"]["p50"] if isinstance(v, dict) and "latency" in v else
                             (v.get("skipped", "skipped") if isinstance(v, dict) else str(v)))
                         for k, v in prec["results"].items() if "/" in k}
    row["precisions"] = prec
    row["acer"] = _acer_for(info, acers)
    return row


def run_components(config: BenchConfig, model: Path, out_dir: Path, peak: CpuPeak) -> dict[str, Any]:
    """Registration vs rs.align, FP32/FP16/INT8 per backend, GFLOP/s vs peak, and the model table."""
    work = out_dir / "artifacts"
    work.mkdir(parents=True, exist_ok=True)
    comp: dict[str, Any] = {}
    log.info("components: registration")
    comp["registration"] = bench_registration(config.source, repeats=max(5, int(config.component_s * 10)))
    acers = _results_acer(config.results)
    log.info("components: default model precisions")
    rows = [model_row("default" if config.model is None else model.name, model, work, config.component_s,
                      threads=config.threads, int8_samples=config.int8_samples, acers=acers)]
    comp["inference"] = rows[0]["precisions"]
    # GFLOP/s against peak (ORT CPU FP32, the default path on a CPU)
    flops = rows[0].get("gflops")
    cpu_fp32 = comp["inference"]["results"].get("onnxruntime-cpu/fp32", {})
    comp["flop_rate"] = {"peak_gflops": peak.gflops, "peak_formula": peak.formula,
                         "blas_gflops": blas_gflops(), "model_gflops_per_decision": flops}
    comp["flop_rate"]["blas_fraction_of_peak"] = comp["flop_rate"]["blas_gflops"] / peak.gflops if peak.gflops else None
    if flops and isinstance(cpu_fp32, dict) and "latency" in cpu_fp32:
        p50_s = cpu_fp32["latency"]["p50"] / 1e3
        achieved = flops / p50_s
        comp["flop_rate"].update({"achieved_gflops": achieved, "fraction_of_peak": achieved / peak.gflops,
                                  "latency_p50_ms": cpu_fp32["latency"]["p50"],
                                  "backend": "onnxruntime-cpu/fp32"})
    for p in config.table_models:
        rows.append(model_row(Path(p).stem, Path(p), work, config.component_s, threads=config.threads,
                              int8_samples=config.int8_samples, acers=acers))
    if config.seed_models:
        log.info("components: seed models")
        seeds = seed_model_onnx(work / "seed")
        if "skipped" in seeds:
            comp["seed_models"] = seeds
        for name, s in seeds.items():
            if not isinstance(s, dict):
                continue
            if "path" not in s:
                rows.append({"name": f"seed:{name}", **s})
                continue
            rows.append(model_row(f"seed:{name}", s["path"], work, config.component_s, threads=config.threads,
                                  int8_samples=config.int8_samples, acers=acers,
                                  extra={"torch_params": s["torch_params"], "config": s["config"]}))
    comp["model_table"] = [{k: v for k, v in r.items() if k != "precisions"} for r in rows]
    return comp


# =============================================================================================== targets
def evaluate_targets(result: Mapping[str, Any]) -> dict[str, Any]:
    """The CPU targets as ratios (None where not measured)."""
    out: dict[str, Any] = {}
    pipe = result.get("pipeline") or {}
    if pipe:
        cost = pipe["cost"]["raw"]["p50"]
        infer = pipe["stages"]["infer"]["raw"]["p50"]
        ratio = cost / infer if infer else None
        out["pipeline_over_inference"] = {
            "ratio": ratio, "target_max": TARGETS["pipeline_over_inference_max"],
            "met": None if ratio is None else ratio <= TARGETS["pipeline_over_inference_max"],
            "definition": "p50 of (sync + register + locate + preprocess + infer + policy) / p50 of infer, "
                          "same run; the wait for the camera (capture) is excluded"}
    comp = result.get("components") or {}
    own = (((comp.get("inference") or {}).get("results") or {}).get("onnxruntime-cpu/fp32") or {}).get("latency")
    if pipe and own and own.get("p50"):
        # the stricter reading: the model's own speed (back-to-back calls, spinning threads) as the denominator
        ratio = pipe["cost"]["raw"]["p50"] / own["p50"]
        out["pipeline_over_inference[model back-to-back]"] = {
            "ratio": ratio, "target_max": TARGETS["pipeline_over_inference_max"],
            "met": ratio <= TARGETS["pipeline_over_inference_max"],
            "definition": "p50 pipeline cost / p50 of the ORT CPU FP32 component (same run)"}
    reg = (comp.get("registration") or {})
    for case in ("source", "d435_like"):
        r = reg.get(case) or {}
        if "ratio" in r:
            out[f"registration_over_rs_align[{case}]"] = {
                "ratio": r["ratio"], "target_max": TARGETS["registration_over_rs_align_max"],
                "met": r["ratio"] <= TARGETS["registration_over_rs_align_max"], "ours_ms": r["ours_ms"],
                "rs_align_ms": r["rs_align_ms"]}
    fr = comp.get("flop_rate") or {}
    if fr.get("fraction_of_peak") is not None:
        out["fraction_of_peak"] = {"ratio": fr["fraction_of_peak"], "target_min": TARGETS["peak_fraction_min"],
                                   "met": fr["fraction_of_peak"] >= TARGETS["peak_fraction_min"]}
    return out


# =============================================================================================== run + output
def run_bench(config: BenchConfig, out_dir: Path | str | None = None) -> dict[str, Any]:
    """Run the pipeline benchmark (and the components when asked); write JSON/Markdown/PNG into ``out_dir``.

    Returns:
        the result document (see :func:`check_schema`).
    """
    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="edgepad-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    model = resolve_model(config.model)
    peak = cpu_peak(config.peak_gflops)
    doc: dict[str, Any] = {"schema": SCHEMA, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(),
                           "command": " ".join(sys.argv), "config": asdict(config), "model": _manifest_info(model),
                           "device": device_info(peak)}
    doc["pipeline"] = run_pipeline(config, model)
    if config.components:
        doc["components"] = run_components(config, model, out, peak)
    doc["targets"] = evaluate_targets(doc)
    doc["versions"] = versions()  # after the measurements: it imports every optional package
    doc["device"]["thermal_c_end"] = thermal_zones()
    write_outputs(doc, out, plots=config.plots)
    return doc


REQUIRED_KEYS = {"schema": str, "created": str, "config": dict, "model": dict, "device": dict, "pipeline": dict,
                 "targets": dict, "versions": dict}
PIPELINE_KEYS = ("decisions", "elapsed_s", "fps", "stages", "e2e", "cost", "drops", "resources", "series")


def check_schema(doc: Mapping[str, Any]) -> None:
    """Raise :class:`ValidationError` unless ``doc`` is a bench result of this schema version."""
    problems: list[str] = []
    if doc.get("schema") != SCHEMA:
        problems.append(f"schema is {doc.get('schema')!r}, expected {SCHEMA!r}")
    for k, t in REQUIRED_KEYS.items():
        if not isinstance(doc.get(k), t):
            problems.append(f"{k}: expected {t.__name__}")
    pipe = doc.get("pipeline") if isinstance(doc.get("pipeline"), Mapping) else {}
    for k in PIPELINE_KEYS:
        if k not in pipe:
            problems.append(f"pipeline.{k} missing")
    for s in STAGES:
        st = (pipe.get("stages") or {}).get(s)
        if not isinstance(st, Mapping) or not all(f"p{q}" in st.get("raw", {}) for q in PERCENTILES) or \
                "max" not in st.get("raw", {}):
            problems.append(f"pipeline.stages.{s} lacks raw p50/p90/p99/max")
    man = doc.get("model") if isinstance(doc.get("model"), Mapping) else {}
    if "sha256" not in man or "manifest_sha256" not in man:
        problems.append("model.sha256 / model.manifest_sha256 missing")
    if problems:
        raise ValidationError("not an edgepad bench result: " + "; ".join(problems), report={"problems": problems})


def load_result(path: Path | str) -> dict[str, Any]:
    """Read and check a bench JSON."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read bench result {path}: {exc}", key="compare") from exc
    check_schema(doc)
    return doc


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _f(v: Any, nd: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, (int, float)):
        return f"{v:.{nd}f}"
    return str(v)


def to_markdown(doc: Mapping[str, Any]) -> str:
    """The Markdown report of a bench result: targets (ratios first), stages, components, model table."""
    pipe = doc["pipeline"]
    cpu = doc["device"]["cpu"]
    lines = [f"# edgepad bench — {Path(doc['model']['path']).name} on {doc['config']['source']}", "",
             f"- device: {cpu['model']} ({cpu['cores']} cores, {cpu['isa']}), {doc['device']['platform']}",
             f"- backend: {pipe['backend']} {pipe.get('providers') or ''}; model sha256 "
             f"`{(doc['model'].get('sha256') or '')[:16]}`, manifest sha256 "
             f"`{(doc['model'].get('manifest_sha256') or '')[:16]}`",
             f"- {pipe['decisions']} decisions in {pipe['elapsed_s']:.1f} s after {pipe['warmup_decisions']} warm-up "
             f"decisions: **{_f(pipe['fps'])} fps** sustained (ended by {pipe['ended_by']})", ""]
    if doc.get("targets"):
        lines += ["## Targets (ratios)", "", "| target | ratio | limit | met |", "|---|---|---|---|"]
        for k, t in doc["targets"].items():
            limit = f"≤ {t['target_max']}" if "target_max" in t else f"≥ {t['target_min']}"
            lines.append(f"| {k} | {_f(t['ratio'], 3)} | {limit} | {'yes' if t['met'] else 'NO'} |")
        lines.append("")
    clipped = any("clipped" in v for v in pipe["stages"].values())
    lines += ["## Per-stage latency (ms)", ""]
    head = "| stage | p50 | p90 | p99 | max | mean |" + (" p50 clipped | p99 clipped | removed |" if clipped else "")
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    rows = [(s, pipe["stages"][s]) for s in STAGES] + [("pipeline cost (no capture)", pipe["cost"]),
                                                       (f"end-to-end ({pipe['e2e']['clock']})", pipe["e2e"])]
    for name, st in rows:
        r = st["raw"]
        line = f"| {name} | {_f(r['p50'])} | {_f(r['p90'])} | {_f(r['p99'])} | {_f(r['max'])} | {_f(r['mean'])} |"
        if clipped and "clipped" in st:
            c = st["clipped"]
            line += f" {_f(c['p50'])} | {_f(c['p99'])} | {c['removed']} |"
        lines.append(line)
    lines += ["", f"End-to-end: {pipe['e2e']['definition']}.", ""]
    drops = pipe["drops"]
    sync = drops.get("sync") or {}
    lines += ["## Drops", "", "| stream | sync dropped | sequence gaps | source queue |", "|---|---|---|---|"]
    streams = sorted(set(sync.get("dropped", {})) | set(drops.get("sequence_gaps", {})))
    for m in streams:
        q = sum(v.get(m, 0) for v in drops.get("source_queue", {}).values())
        lines.append(f"| {m} | {sync.get('dropped', {}).get(m, '–')} | {drops['sequence_gaps'].get(m, '–')} | {q} |")
    lines += ["", f"Pipeline queues dropped: {drops.get('pipeline')}; capture timeouts: {pipe['timeouts']}.", ""]
    res = pipe.get("resources") or {}
    if res:
        lines += ["## Resources", "",
                  f"- process CPU: {_f(res.get('process_cpu_cores'))} cores "
                  f"({_f(res.get('process_cpu_pct_of_machine'), 1)} % of {res.get('cores')}); machine busy "
                  f"{_f(res.get('machine_cpu_busy_pct'), 1)} %",
                  f"- RSS: mean {_f((res.get('rss_mib') or {}).get('mean'), 1)} MiB, peak "
                  f"{_f(res.get('peak_rss_mib'), 1)} MiB",
                  f"- GPU: {res.get('gpu_util_pct') or res.get('gpu', '–')}; GPU memory "
                  f"{res.get('gpu_mem_used_mib') or res.get('torch_cuda_max_allocated_mib') or '–'}"]
        if res.get("power_mw"):
            lines.append(f"- power (tegrastats): " + ", ".join(f"{k} {v['mean']:.0f} mW"
                                                              for k, v in res["power_mw"].items()))
        lines.append("")
    dev = doc["device"]
    if dev.get("jetson"):
        lines += ["## Jetson", "", f"- nvpmodel: `{dev.get('nvpmodel')}`", f"- jetson_clocks: "
                  f"`{str(dev.get('jetson_clocks'))[:300]}`", f"- temperatures: {dev.get('thermal_c')}", ""]
    if pipe.get("soak"):
        lines += ["## Thermal soak", "", "| bucket | start s | fps | total p50 | total p99 | infer p99 | temps |",
                  "|---|---|---|---|---|---|---|"]
        for b in pipe["soak"]:
            lines.append(f"| {b['bucket']} | {b['start_s']:.0f} | {_f(b['fps'])} | {_f(b['total_p50'])} | "
                         f"{_f(b['total_p99'])} | {_f(b['infer_p99'])} | {b.get('temp_c', '–')} |")
        lines.append("")
    comp = doc.get("components")
    if comp:
        lines += _components_md(comp)
    return "\n".join(lines) + "\n"


def _components_md(comp: Mapping[str, Any]) -> list[str]:
    lines = ["## Components (same run)", "", "### Depth registration vs rs.align", "",
             "| frames | ours ms | rs.align ms | ratio | identical px | cv2.rgbd |", "|---|---|---|---|---|---|"]
    reg = comp.get("registration") or {}
    for case in ("source", "source_rsutil", "d435_like"):
        r = reg.get(case)
        if not isinstance(r, Mapping):
            continue
        if "skipped" in r:
            lines.append(f"| {case} | skipped: {r['skipped']} | | | | |")
            continue
        cv = r.get("opencv_rgbd", {})
        cvs = (f"{_f(cv['ms'])} ms, |Δ| p50/p90 {_f(cv['abs_diff_mm_p50'], 1)}/{_f(cv['abs_diff_mm_p90'], 1)} mm, "
               f"coverage {_f(cv['coverage'], 3)}") if "ms" in cv else cv.get("skipped", "–")
        lines.append(f"| {case} {r.get('width')}×{r.get('height')}→{r.get('target')} ({r.get('semantics', 'align')}) | "
                     f"{_f(r.get('ours_ms'))} | "
                     f"{_f(r.get('rs_align_ms'))} | {_f(r.get('ratio'), 3)} | {_f(r.get('identical_fraction'), 5)} | "
                     f"{cvs} |")
    lines += ["", f"librealsense: {reg.get('librealsense')}", "", "### Inference per backend and precision (ms)", "",
              "| backend/precision | p50 | p90 | p99 | max |", "|---|---|---|---|---|"]
    for k, v in ((comp.get("inference") or {}).get("results") or {}).items():
        if isinstance(v, Mapping) and "latency" in v:
            s = v["latency"]
            lines.append(f"| {k} | {_f(s['p50'], 3)} | {_f(s['p90'], 3)} | {_f(s['p99'], 3)} | {_f(s['max'], 3)} |")
        else:
            why = v.get("skipped") if isinstance(v, Mapping) else v
            lines.append(f"| {k} | skipped: {why} | | | |")
    fr = comp.get("flop_rate") or {}
    lines += ["", "### FLOP rate", "",
              f"- model: {_f(fr.get('model_gflops_per_decision'), 4)} GFLOP per decision (2 × Conv/Gemm/MatMul MACs)",
              f"- achieved (ORT CPU FP32 p50): {_f(fr.get('achieved_gflops'), 1)} GFLOP/s = "
              f"**{_f(fr.get('fraction_of_peak'), 3)} of peak**",
              f"- peak: {fr.get('peak_formula')}",
              f"- numpy BLAS 1024² matmul: {_f(fr.get('blas_gflops'), 1)} GFLOP/s = "
              f"{_f(fr.get('blas_fraction_of_peak'), 3)} of peak", ""]
    table = comp.get("model_table") or []
    if table:
        keys: list[str] = []
        for r in table:
            for k in (r.get("latency_ms") or {}):
                if k not in keys:
                    keys.append(k)
        lines += ["### Model table", "", "| model | params | GFLOP/decision | " + " | ".join(keys) + " | ACER |",
                  "|" + "---|" * (4 + len(keys))]
        for r in table:
            if "skipped" in r:
                lines.append(f"| {r['name']} | skipped: {r['skipped']} |" + " |" * (2 + len(keys)))
                continue
            lat = r.get("latency_ms") or {}
            cells = [(_f(lat[k], 3) if isinstance(lat.get(k), (int, float)) else "skipped") for k in keys]
            acer = r.get("acer")
            acer_s = _f(acer["acer"], 4) if isinstance(acer, Mapping) else str(acer)
            params = r.get("params")
            lines.append(f"| {r['name']} | {params if params is not None else '–'} | {_f(r.get('gflops'), 4)} | "
                         + " | ".join(cells) + f" | {acer_s} |")
        lines += ["", "Latency cells are p50 ms; 'skipped' reasons are in the JSON.", ""]
    if comp.get("seed_models"):
        lines += [f"Seed models: {comp['seed_models']}", ""]
    return lines


def write_outputs(doc: Mapping[str, Any], out: Path, plots: bool = True) -> dict[str, Path]:
    """Write ``bench.json``, ``bench.md`` and (with matplotlib) ``latency_hist.png``, ``latency_cdf.png``,
    ``latency_time.png`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "bench.json", "md": out / "bench.md"}
    paths["json"].write_text(json.dumps(doc, indent=1, default=_json_default) + "\n")
    paths["md"].write_text(to_markdown(doc))
    if plots:
        paths.update(write_plots(doc, out))
    return paths


def write_plots(doc: Mapping[str, Any], out: Path) -> dict[str, Path]:
    """Latency histogram and CDF per stage, and latency over time (PNG); {} without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib not installed: no plots")
        return {}
    series = doc["pipeline"]["series"]
    names = list(STAGES) + ["e2e"]
    paths: dict[str, Path] = {}
    fig, axes = plt.subplots(3, 3, figsize=(12, 9))
    for ax, s in zip(axes.ravel(), names):
        v = np.asarray(series.get(s, []), np.float64)
        ax.hist(v, bins=40, color="tab:blue")
        ax.set_title(s)
        ax.set_xlabel("ms")
    fig.suptitle("latency histogram per stage")
    fig.tight_layout()
    paths["hist"] = out / "latency_hist.png"
    fig.savefig(paths["hist"], dpi=80)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(8, 5))
    for s in names:
        v = np.sort(np.asarray(series.get(s, []), np.float64))
        if v.size:
            ax.plot(np.maximum(v, 1e-3), np.arange(1, v.size + 1) / v.size, label=s)
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log)")
    ax.set_ylabel("fraction ≤ x")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("latency CDF per stage")
    paths["cdf"] = out / "latency_cdf.png"
    fig.savefig(paths["cdf"], dpi=80)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(10, 4))
    t = np.asarray(series["t_s"])
    for s in ("total", "infer", "locate", "preprocess", "register"):
        ax.plot(t, series[s], lw=0.8, label=s)
    ax.set_xlabel("time since warm-up (s)")
    ax.set_ylabel("ms")
    ax.legend(fontsize=8)
    ax.set_title("latency over time")
    paths["time"] = out / "latency_time.png"
    fig.savefig(paths["time"], dpi=80)
    plt.close(fig)
    return paths


# =============================================================================================== compare
def compare(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Ratios B / A per stage (p50, p99), fps, end-to-end and the shared component figures."""
    def ratio(x: Any, y: Any) -> float | None:
        return y / x if isinstance(x, (int, float)) and isinstance(y, (int, float)) and x else None
    pa, pb = a["pipeline"], b["pipeline"]
    stages = {}
    for s in list(STAGES) + ["cost", "e2e"]:
        sa = pa["stages"][s]["raw"] if s in STAGES else pa[s]["raw"]
        sb = pb["stages"][s]["raw"] if s in STAGES else pb[s]["raw"]
        stages[s] = {"a_p50": sa["p50"], "b_p50": sb["p50"], "ratio_p50": ratio(sa["p50"], sb["p50"]),
                     "a_p99": sa["p99"], "b_p99": sb["p99"], "ratio_p99": ratio(sa["p99"], sb["p99"])}
    out: dict[str, Any] = {"a": {"created": a.get("created"), "model": a["model"].get("path"),
                                 "source": a["config"].get("source"), "device": a["device"]["cpu"]["model"]},
                           "b": {"created": b.get("created"), "model": b["model"].get("path"),
                                 "source": b["config"].get("source"), "device": b["device"]["cpu"]["model"]},
                           "stages": stages,
                           "fps": {"a": pa["fps"], "b": pb["fps"], "ratio": ratio(pa["fps"], pb["fps"])}}
    ca = ((a.get("components") or {}).get("inference") or {}).get("results") or {}
    cb = ((b.get("components") or {}).get("inference") or {}).get("results") or {}
    inf = {}
    for k in sorted(set(ca) & set(cb)):
        if isinstance(ca[k], Mapping) and isinstance(cb[k], Mapping) and "latency" in ca[k] and "latency" in cb[k]:
            inf[k] = {"a_p50": ca[k]["latency"]["p50"], "b_p50": cb[k]["latency"]["p50"],
                      "ratio_p50": ratio(ca[k]["latency"]["p50"], cb[k]["latency"]["p50"])}
    if inf:
        out["inference"] = inf
    ra = ((a.get("components") or {}).get("registration") or {})
    rb = ((b.get("components") or {}).get("registration") or {})
    reg = {}
    for case in ("source", "d435_like"):
        x, y = ra.get(case) or {}, rb.get(case) or {}
        if "ours_ms" in x and "ours_ms" in y:
            reg[case] = {"a_ms": x["ours_ms"], "b_ms": y["ours_ms"], "ratio": ratio(x["ours_ms"], y["ours_ms"])}
    if reg:
        out["registration"] = reg
    return out


def compare_markdown(c: Mapping[str, Any]) -> str:
    """Markdown table of :func:`compare` (ratio = B / A; < 1 means B is faster)."""
    lines = ["# edgepad bench compare (ratio = B / A; < 1: B faster)", "",
             f"- A: {c['a']['model']} on {c['a']['source']} ({c['a']['device']}, {c['a']['created']})",
             f"- B: {c['b']['model']} on {c['b']['source']} ({c['b']['device']}, {c['b']['created']})",
             f"- fps: A {_f(c['fps']['a'])}, B {_f(c['fps']['b'])}, ratio B/A {_f(c['fps']['ratio'], 3)}", "",
             "| stage | A p50 | B p50 | p50 ratio | A p99 | B p99 | p99 ratio |", "|---|---|---|---|---|---|---|"]
    for s, r in c["stages"].items():
        lines.append(f"| {s} | {_f(r['a_p50'])} | {_f(r['b_p50'])} | {_f(r['ratio_p50'], 3)} | {_f(r['a_p99'])} | "
                     f"{_f(r['b_p99'])} | {_f(r['ratio_p99'], 3)} |")
    if c.get("inference"):
        lines += ["", "| inference | A p50 | B p50 | ratio |", "|---|---|---|---|"]
        for k, r in c["inference"].items():
            lines.append(f"| {k} | {_f(r['a_p50'], 3)} | {_f(r['b_p50'], 3)} | {_f(r['ratio_p50'], 3)} |")
    if c.get("registration"):
        lines += ["", "| registration | A ms | B ms | ratio |", "|---|---|---|---|"]
        for k, r in c["registration"].items():
            lines.append(f"| {k} | {_f(r['a_ms'])} | {_f(r['b_ms'])} | {_f(r['ratio'], 3)} |")
    return "\n".join(lines) + "\n"


def compare_files(a: Path | str, b: Path | str, out: Path | str | None = None) -> tuple[dict[str, Any], str]:
    """Compare two bench JSON files; writes ``compare.json``/``compare.md`` into ``out`` when given."""
    c = compare(load_result(a), load_result(b))
    md = compare_markdown(c)
    if out:
        o = Path(out)
        o.mkdir(parents=True, exist_ok=True)
        (o / "compare.json").write_text(json.dumps(c, indent=1, default=_json_default) + "\n")
        (o / "compare.md").write_text(md)
    return c, md


# =============================================================================================== CLI
def config_from_args(args: Any) -> BenchConfig:
    return BenchConfig(source=args.source, model=args.model, backend=args.backend, warmup_s=args.warmup_s,
                       budget_s=args.budget_s, frames=args.frames, clip_k=args.clip_outliers, locator=args.locator,
                       threads=args.threads, threaded=args.threaded, components=args.components,
                       component_s=args.component_s, soak_min=args.soak_min, soak_bucket_s=args.soak_bucket_s,
                       peak_gflops=args.peak_gflops, results=tuple(args.results),
                       table_models=tuple(args.table_model), seed_models=not args.no_seed_models,
                       int8_samples=args.int8_samples, plots=not args.no_plots)


def main_from_args(args: Any) -> int:
    """Run ``edgepad bench`` from parsed arguments; prints the Markdown report (the only printing here)."""
    if args.compare:
        _, md = compare_files(args.compare[0], args.compare[1], args.out if args.out != "bench-out" else None)
        print(md)
        return 0
    doc = run_bench(config_from_args(args), args.out)
    print(to_markdown(doc))
    print(f"written: {Path(args.out) / 'bench.json'}, {Path(args.out) / 'bench.md'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edgepad.bench`` (same arguments as ``edgepad bench``)."""
    import argparse
    from edgepad.commands.bench import add_bench_arguments
    parser = argparse.ArgumentParser(prog="python -m edgepad.bench", description=__doc__.splitlines()[0])
    add_bench_arguments(parser)
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2), format="%(levelname)s %(name)s: %(message)s")
    try:
        return main_from_args(args)
    except MissingDependencyError as exc:
        print(f"edgepad bench: {exc}", file=sys.stderr)
        return 2
    except EdgePadError as exc:
        print(f"edgepad bench: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
