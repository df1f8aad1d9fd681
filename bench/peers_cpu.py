"""CPU peers of ssmc on the SAME inputs (safetensors written by `ssmc run --save-inputs`):
JAX jit lax.scan Mamba-1 and the JAX chunked SSD (ssd_minimal) Mamba-2, both computing the
full layers of stdlib/ (softplus of dt + bias, skip D, silu gate). Prints one JSON line per
peer: median ms of N runs after a warm-up, and the relative error against ssmc's output."""
import json, sys, time
import numpy as np
import jax, jax.numpy as jnp
from safetensors.numpy import load_file

jax.config.update("jax_enable_x64", False)


def bench(f, *a, n=10):
    f(*a).block_until_ready()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f(*a).block_until_ready()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2] * 1e3


def softplus(x):
    return jnp.where(x > 20.0, x, jnp.log1p(jnp.exp(x)))


def silu(x):
    return x * jax.nn.sigmoid(x)


@jax.jit
def mamba1_scan(u, delta, A, B, C, D, z, delta_bias):
    # u, delta, z: (b, d, L); A: (d, n); B, C: (b, g, n, L) with g = 1.
    dt = softplus(delta + delta_bias[None, :, None])
    Bt, Ct = B[:, 0].transpose(2, 0, 1), C[:, 0].transpose(2, 0, 1)  # (L, b, n)

    def step(h, inp):
        ut, dtt, bt, ct = inp  # (b, d), (b, d), (b, n), (b, n)
        h = jnp.exp(dtt[..., None] * A) * h + (dtt * ut)[..., None] * bt[:, None, :]
        return h, jnp.einsum("bdn,bn->bd", h, ct)

    h0 = jnp.zeros(u.shape[:2] + (A.shape[1],), u.dtype)
    _, ys = jax.lax.scan(step, h0, (u.transpose(2, 0, 1), dt.transpose(2, 0, 1), Bt, Ct))
    y = ys.transpose(1, 2, 0) + D[None, :, None] * u
    return y * silu(z)


def ssd_chunked(X, DT, A, B, C, D, Z, dt_bias, Q=256):
    # X, Z: (b, L, h, p); DT: (b, L, h); A, D, dt_bias: (h,); B, C: (b, L, g=1, n).
    b, L, H, P = X.shape
    N = B.shape[-1]
    c = L // Q
    dt = softplus(DT + dt_bias)
    x = (X * dt[..., None]).reshape(b, c, Q, H, P)
    a = (dt * A).reshape(b, c, Q, H).transpose(0, 3, 1, 2)
    Bc, Cc = B[:, :, 0].reshape(b, c, Q, N), C[:, :, 0].reshape(b, c, Q, N)
    acs = jnp.cumsum(a, -1)
    seg = acs[..., :, None] - acs[..., None, :]
    mask = jnp.tril(jnp.ones((Q, Q), bool))
    Lm = jnp.where(mask, jnp.exp(jnp.where(mask, seg, -jnp.inf)), 0.0)
    ydiag = jnp.einsum("bcln,bcsn,bhcls,bcshp->bclhp", Cc, Bc, Lm, x)
    decay_states = jnp.exp(acs[..., -1:] - acs)
    states = jnp.einsum("bcln,bhcl,bclhp->bchpn", Bc, decay_states, x)
    states = jnp.concatenate([jnp.zeros_like(states[:, :1]), states], 1)
    ca = jnp.pad(acs[..., -1], ((0, 0), (0, 0), (1, 0)))
    cs = jnp.cumsum(ca, -1)
    m2 = jnp.tril(jnp.ones((c + 1, c + 1), bool))
    dc = jnp.where(m2, jnp.exp(jnp.where(m2, cs[..., :, None] - cs[..., None, :], -jnp.inf)), 0.0)
    new_states = jnp.einsum("bhzc,bchpn->bzhpn", dc, states)[:, :-1]
    yoff = jnp.einsum("bcln,bchpn,bhcl->bclhp", Cc, new_states, jnp.exp(acs))
    y = (ydiag + yoff).reshape(b, L, H, P) + D[None, None, :, None] * X
    return y * silu(Z)


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def main():
    which, inputs, ssmc_out, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    t = {k: jnp.asarray(v.astype(np.float32)) for k, v in load_file(inputs).items()}
    ref = load_file(ssmc_out)["out"]
    if which == "mamba1":
        f = mamba1_scan
        args = [t[k] for k in ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]]
        name = "jax_lax_scan"
    else:
        f = jax.jit(ssd_chunked)
        args = [t[k] for k in ["x", "dt", "A", "B", "C", "D", "z", "dt_bias"]]
        name = "jax_chunked_ssd"
    ms = bench(f, *args, n=runs)
    err = rel_err(f(*args), ref)
    print(json.dumps({"peer": name, "layer": which, "median_ms": round(ms, 3), "rel_err_vs_ssmc": err, "jax": jax.__version__}))


if __name__ == "__main__":
    main()
