#!/usr/bin/env python3
"""Mamba-1 forward on the GPU: ssmc's PTX artifacts against mamba_ssm's selective_scan_cuda,
in one run, on the same inputs (z, delta_bias and softplus on), outputs compared, kernel
time only (CUDA events, median of 50 launches after 5).

    python3 bench/gpu_mamba1.py --peer CSRC --build BUILD_DIR --out RESULTS.json \
        fp32:ARTIFACT_DIR ... bf16:ARTIFACT_DIR ...

CSRC holds state-spaces/mamba's csrc/selective_scan (fetched, never committed); it is built
with torch.utils.cpp_extension into BUILD_DIR (about 2 minutes on the H200 machine; a
second run reuses it). Each ARTIFACT_DIR is `ssmc build --target cuda` of stdlib/mamba1.ssm
(fp32) or of the same layer with bf16 u, delta, B, C and z (bf16); the table names it by
its form and folder. Prints a table last: per shape and input dtype, each time, its ratio to the peer and
its multiple of the memory floor (each input read once, the output written once, at the
4.28 TB/s PERF.md measured)."""
import argparse, json, os, sys, time
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpu_forms  # noqa: E402  (the launch as the manifest says)

SHAPES = [(8, 4096, 2048), (1, 1536, 2048), (64, 2048, 256)]
N = 16
BANDWIDTH = 4.28e12


def bench(f, warmup=5, reps=50):
    for _ in range(warmup):
        f()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); f(); b.record(); b.synchronize()
        times.append(a.elapsed_time(b) * 1e3)
    return sorted(times)[len(times) // 2]


def build_peer(csrc, build):
    from torch.utils.cpp_extension import load
    os.makedirs(build, exist_ok=True)
    flags = ["-O3", "-std=c++17", "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
             "-U__CUDA_NO_BFLOAT16_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
             "-U__CUDA_NO_BFLOAT162_OPERATORS__", "-U__CUDA_NO_BFLOAT162_CONVERSIONS__",
             "--expt-relaxed-constexpr", "--expt-extended-lambda", "--use_fast_math",
             "-gencode", "arch=compute_90,code=sm_90"]
    sources = [f"{csrc}/selective_scan.cpp"] + [f"{csrc}/{f}" for f in sorted(os.listdir(csrc)) if f.endswith(".cu")]
    return load(name="selective_scan_cuda", sources=sources, extra_cflags=["-O3", "-std=c++17"],
                extra_cuda_cflags=flags, build_directory=build, verbose=False)


class Artifact:
    """An ssmc PTX artifact, launched as its manifest says (gpu_forms.launcher) on torch
    tensors."""

    def __init__(self, d):
        self.d = d
        self.m = json.load(open(f"{d}/manifest.json"))

    def launcher(self, tensors, sizes):
        ptrs = [tensors[t["name"]].data_ptr() for t in self.m["tensors"]]
        return gpu_forms.launcher(self.d, self.m, ptrs, sizes)[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peer", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--build-only", action="store_true", help="build the peer, then stop")
    ap.add_argument("artifacts", nargs="*")
    args = ap.parse_args()
    t0 = time.time()
    ssc = build_peer(args.peer, args.build)
    print(f"selective_scan_cuda built in {time.time() - t0:.0f} s", flush=True)
    if args.build_only:
        return
    arts = [(kind, folder, Artifact(folder)) for kind, folder in (a.split(":", 1) for a in args.artifacts)]
    rows, results = [], []
    torch.manual_seed(0)
    for b, d, l in SHAPES:
        dev = dict(device="cuda", dtype=torch.float32)
        u = torch.randn(b, d, l, **dev)
        delta = torch.randn(b, d, l, **dev) * 0.5
        A = -(torch.rand(d, N, **dev) * 3.5 + 0.5)
        B = torch.randn(b, 1, N, l, **dev)
        C = torch.randn(b, 1, N, l, **dev)
        D = torch.randn(d, **dev)
        z = torch.randn(b, d, l, **dev)
        bias = -(torch.rand(d, **dev) * 2 + 2)
        for kind in ["fp32", "bf16"]:
            cast = (lambda t: t) if kind == "fp32" else (lambda t: t.bfloat16())
            ins = {"u": cast(u), "delta": cast(delta), "A": A, "B": cast(B), "C": cast(C), "D": D, "z": cast(z),
                   "delta_bias": bias}
            peer = lambda: ssc.fwd(ins["u"], ins["delta"], A, ins["B"], ins["C"], D, ins["z"], bias, True)
            want = peer()[2].float()
            peer_us = bench(peer)
            elem = 2 if kind == "bf16" else 4
            floor_us = ((4 * b * d * l + 2 * b * N * l) * elem) / BANDWIDTH * 1e6
            if kind == "bf16":  # ssmc writes f32 outputs: count them so
                floor_us += b * d * l * 2 / BANDWIDTH * 1e6
            shape = f"b{b} d{d} n{N} L{l}"
            rows.append((shape, kind, "selective_scan_cuda", peer_us, 1.0, peer_us / floor_us, 0.0))
            for akind, folder, art in arts:
                if akind != kind:
                    continue
                out = torch.full((b, d, l), float("nan"), **dev)
                run = art.launcher({**ins, "out": out}, {"B": b, "D": d, "L": l, "G": 1})
                run(); torch.cuda.synchronize()
                err = float((out - want).norm() / want.norm())
                us = bench(run)
                name = f"ssmc {art.m['form']} ({os.path.basename(folder.rstrip('/'))})"
                rows.append((shape, kind, name, us, peer_us / us, us / floor_us, err))
    for r in rows:
        results.append(dict(zip(["shape", "inputs", "kernel", "us", "speedup_vs_peer", "x_floor", "relerr_vs_peer"], r)))
    json.dump(results, open(args.out, "w"), indent=1)
    print(f"\n{'shape':<22} {'in':<5} {'kernel':<40} {'us':>9} {'vs peer':>8} {'x floor':>8} {'rel err':>9}")
    for shape, kind, name, us, speed, xf, err in rows:
        print(f"{shape:<22} {kind:<5} {name:<40} {us:9.1f} {speed:7.2f}x {xf:8.1f} {err:9.1e}")


main()
