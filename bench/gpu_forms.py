#!/usr/bin/env python3
"""Times ssmc GPU artifacts (PTX + manifest.json) with CuPy, each launched as its manifest
says, on random inputs of the given dims. Used for the GPU schedules' figures in
bench/NOTES.md (timings only: correctness is tests/backends.rs and tests/gpu.rs).

    python3 bench/gpu_forms.py DIM=SIZE ... -- ARTIFACT_DIR ...

Prints one line per artifact: its form, the median time of 20 launches after 3 warm-ups,
and the bytes its tensors hold over the time (the memory-bound rate it reaches)."""
import json, math, re, sys
import cupy as cp

def shape_of(axis, sizes):
    if re.fullmatch(r"\d+", axis):
        return int(axis)
    name, _, div = axis.partition("/")
    return sizes[name] // (int(div) if div else 1)

def launcher(d, m, ptrs, sizes):
    """The launch of artifact `d` (manifest `m`) as its manifest says, on device buffers at
    `ptrs` (manifest order) and dim `sizes` (compile-time dims added); returns the call that
    launches it and (work items, threads, blocks, shared bytes)."""
    sizes = dict(sizes)
    for dim in m["dims"]:
        if dim["size"] is not None:
            sizes.setdefault(dim["name"], dim["size"])
    table = cp.asarray(ptrs, dtype=cp.uint64)
    runtime = [sizes[dim["name"]] for dim in m["dims"] if dim["size"] is None]
    dims = cp.asarray(runtime + [0], dtype=cp.int64)
    ev = lambda e: int(eval(e.replace("/", "//"), {"min": min}, dict(sizes)))
    launch = m["launch"]
    items = ev(launch["work_items"])
    threads, per, shared = launch["threads"], launch["items_per_block"], ev(launch["shared_bytes"])
    f = cp.RawModule(path=f"{d}/{m['files']['ptx']}").get_function(m["entry"])
    if shared > 48 * 1024:
        f.max_dynamic_shared_size_bytes = shared
    grid = (math.ceil(items / per),)
    run = lambda: f(grid, (threads,), (table, dims, cp.int64(0), cp.int64(items)), shared_mem=shared)
    return run, (items, threads, grid[0], shared)


def main():
    args = sys.argv[1:]
    cut = args.index("--")
    sizes = {k: int(v) for k, v in (a.split("=") for a in args[:cut])}
    for d in args[cut + 1:]:
        m = json.load(open(f"{d}/manifest.json"))
        for dim in m["dims"]:
            if dim["size"] is not None:
                sizes.setdefault(dim["name"], dim["size"])
        dtypes = {"f32": cp.float32, "bf16": cp.uint16}
        bufs, nbytes = [], 0
        for t in m["tensors"]:
            shape = [shape_of(a, sizes) for a in t["shape"]]
            dt = dtypes[t["dtype"]]
            if dt == cp.float32:
                x = -cp.random.rand(*shape, dtype=cp.float32) * 0.5
            else:  # bf16: the top half of an f32
                x = (cp.asarray(-cp.random.rand(*shape, dtype=cp.float32) * 0.5).view(cp.uint32) >> 16).astype(cp.uint16)
            bufs.append(x)
            nbytes += x.nbytes
        run, (items, threads, blocks, shared) = launcher(d, m, [b.data.ptr for b in bufs], sizes)
        for _ in range(3):
            run()
        cp.cuda.Device().synchronize()
        times = []
        for _ in range(20):
            a, b = cp.cuda.Event(), cp.cuda.Event()
            a.record(); run(); b.record(); b.synchronize()
            times.append(cp.cuda.get_elapsed_time(a, b) * 1e3)
        us = sorted(times)[len(times) // 2]
        print(f"{m['layer']:>8} {m['form']:>10} {us:10.1f} us  {nbytes / us / 1e6:7.2f} TB/s  ({items} work items, {threads} threads x {blocks} blocks, {shared} B shared)", flush=True)

if __name__ == "__main__":
    main()
