"""On-device benchmark: where the frame budget goes (``edgepad bench``; docs/PERFORMANCE.md has the figures).

Needs only numpy and one runtime (onnxruntime or TensorRT) on the device: onnx (FLOP counting, FP16/INT8
variants), torch (seed-method model table), pyrealsense2 (rs.align), matplotlib (plots) and opencv-contrib
(``cv2.rgbd.registerDepth``) are used when present and reported as skipped otherwise.

What it measures:

* **Pipeline** (:mod:`~edgepad.bench.pipeline`): the real :class:`~edgepad.runtime.pipeline.LivenessPipeline` on a
  source, after a warm-up, for a time budget (or a number of frames). Per stage (:data:`edgepad.types.STAGES`)
  p50/p90/p99/max of ``Decision.latency_ms``; end-to-end latency from the frame timestamp to the decision;
  sustained fps; dropped frames per stream; CPU utilisation, RSS, GPU utilisation/memory; optional outlier clipping
  reported beside the raw figures (:mod:`~edgepad.bench.stats`). Every backend returns host arrays only after its
  stream is synchronised (TensorRT ``cudaStreamSynchronize``, torch ``.cpu()``, ONNX Runtime copies outputs), so
  the host ``perf_counter_ns`` timers around a stage are CUDA-synchronised; the component benchmarks call
  ``torch.cuda.synchronize()`` before each timer read when they time torch on a GPU.
* **Components** (:mod:`~edgepad.bench.components`), side by side in one run: depth registration vs ``rs.align``
  on the same frames; model inference FP32 vs FP16 vs INT8 per available backend; achieved GFLOP/s
  (:mod:`~edgepad.bench.flops`) against the machine's peak (:mod:`~edgepad.bench.machine`); a model table.
* **Jetson**: nvpmodel mode, jetson_clocks state, thermal zones, tegrastats power; thermal soak (p99 per minute).

:func:`run_bench` (:mod:`~edgepad.bench.run`) writes ``bench.json`` / ``bench.md`` / PNG plots
(:mod:`~edgepad.bench.report`); :func:`compare_files` (:mod:`~edgepad.bench.compare`) compares two runs.
"""
from edgepad.bench.compare import compare, compare_files, compare_markdown
from edgepad.bench.components import (bench_backend, bench_precisions, bench_registration, make_variants, model_row,
                                      run_components, seed_model_onnx)
from edgepad.bench.config import DeviceBenchConfig, manifest_info, resolve_model
from edgepad.bench.flops import count_flops
from edgepad.bench.machine import (CpuPeak, ResourceMonitor, blas_gflops, cpu_peak, device_info, measure_clock_ghz,
                                   nvidia_smi_sample, parse_tegrastats, peak_rss_mib, process_cpu_s, rss_mib,
                                   system_cpu_ticks, thermal_zones, versions)
from edgepad.bench.pipeline import COST_STAGES, NO_FRAMES_GIVE_UP_S, run_pipeline
from edgepad.bench.report import SCHEMA, check_schema, load_result, to_markdown, write_outputs, write_plots
from edgepad.bench.run import TARGETS, evaluate_targets, run_bench
from edgepad.bench.stats import PERCENTILES, clip_outliers, latency_stats, soak_buckets, summarize, time_calls

__all__ = ["COST_STAGES", "CpuPeak", "DeviceBenchConfig", "NO_FRAMES_GIVE_UP_S", "PERCENTILES", "ResourceMonitor",
           "SCHEMA", "TARGETS", "bench_backend", "bench_precisions", "bench_registration", "blas_gflops",
           "check_schema", "clip_outliers", "compare", "compare_files", "compare_markdown", "count_flops",
           "cpu_peak", "device_info", "evaluate_targets", "latency_stats", "load_result", "make_variants",
           "manifest_info", "measure_clock_ghz", "model_row", "nvidia_smi_sample", "parse_tegrastats",
           "peak_rss_mib", "process_cpu_s", "resolve_model", "rss_mib", "run_bench", "run_components",
           "run_pipeline", "seed_model_onnx", "soak_buckets", "summarize", "system_cpu_ticks", "thermal_zones",
           "time_calls", "to_markdown", "versions", "write_outputs", "write_plots"]
