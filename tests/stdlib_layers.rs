//! The stdlib layers against independent ports of the upstream reference code.
//!
//! Each layer of `stdlib/` claims to match a published reference implementation. Here
//! each reference is written out again, straight from the upstream code and not from the
//! interpreter: `selective_scan_ref` (mamba_ssm) for Mamba-1, the chunked
//! `ssd_minimal_discrete` (segsum, intra-chunk quadratic term, inter-chunk state passing)
//! with a ragged last chunk for Mamba-2, the S4D convolution kernel of `s4d.py`, and two
//! `selective_scan_ref` calls on flipped sequences for Vim. Each port runs on generated
//! inputs at awkward sizes and must agree with `interp::run` to 1e-10 relative (f64).

use ssmc_compiler::bind::{sizes_from_dims, Sizes};
use ssmc_compiler::forms::{self, egraph, Form};
use ssmc_compiler::interp;
use ssmc_compiler::ir::Layer;
use ssmc_compiler::target::Target;
use ssmc_compiler::tensors::{generate_inputs, TensorMap};
use std::collections::BTreeMap;

const TOLERANCE: f64 = 1e-10;

/// A reference implementation: inputs by name to the output `out`, row-major.
type Reference = fn(&TensorMap) -> Vec<f64>;

fn load(source: &str, name: &str) -> Layer {
    let (module, _) =
        ssmc_compiler::compile(source).unwrap_or_else(|d| panic!("stdlib/{name}.ssm does not compile: {d:?}"));
    module.layer(name).unwrap_or_else(|| panic!("stdlib/{name}.ssm has no layer `{name}`")).clone()
}

fn mamba1_layer() -> Layer {
    load(include_str!("../stdlib/mamba1.ssm"), "mamba1")
}

fn mamba2_layer() -> Layer {
    load(include_str!("../stdlib/mamba2.ssm"), "mamba2")
}

fn s4d_layer() -> Layer {
    load(include_str!("../stdlib/s4d.ssm"), "s4d")
}

fn vim_layer() -> Layer {
    load(include_str!("../stdlib/vim.ssm"), "vim")
}

fn sizes(layer: &Layer, dims: &[(&str, usize)]) -> Sizes {
    let map: BTreeMap<String, usize> = dims.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    sizes_from_dims(layer, &map).unwrap_or_else(|e| panic!("{} at {dims:?}: {e}", layer.name))
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// ||ours - theirs|| / ||ours||, both as flat row-major vectors.
fn rel_err(ours: &[f64], theirs: &[f64]) -> f64 {
    assert_eq!(ours.len(), theirs.len(), "output sizes differ");
    let diff: Vec<f64> = ours.iter().zip(theirs).map(|(a, b)| a - b).collect();
    norm(&diff) / norm(ours)
}

/// Runs the interpreter and the reference on the same generated inputs; returns the
/// relative error after checking shape, finiteness and the tolerance.
fn compare(layer: &Layer, dims: &[(&str, usize)], seed: u64, reference: Reference) -> f64 {
    let sizes = sizes(layer, dims);
    let inputs = generate_inputs(layer, &sizes, seed);
    let theirs = interp::run(layer, &sizes, &inputs);
    let theirs = &theirs["out"];
    let ours = reference(&inputs);
    let expected_len: usize = theirs.shape.iter().product();
    assert_eq!(ours.len(), expected_len, "{} {dims:?}: reference output has the wrong size", layer.name);
    assert!(ours.iter().all(|v| v.is_finite()), "{} {dims:?} seed {seed}: reference output not finite", layer.name);
    assert!(theirs.data.iter().all(|v| v.is_finite()), "{} {dims:?} seed {seed}: ssmc output not finite", layer.name);
    assert!(norm(&ours) > 0.0, "{} {dims:?} seed {seed}: reference output is all zero", layer.name);
    let err = rel_err(&ours, &theirs.data);
    assert!(err < TOLERANCE, "{} {dims:?} seed {seed}: relative error {err:e} >= {TOLERANCE:e}", layer.name);
    every_legal_form_agrees(layer, &sizes, &inputs, &ours, dims);
    err
}

/// Every form the e-graph finds legal, and a chunk size that divides no L here, matches
/// the reference too (forms reassociate sums, hence the looser 1e-9).
fn every_legal_form_agrees(layer: &Layer, sizes: &Sizes, inputs: &TensorMap, ours: &[f64], dims: &[(&str, usize)]) {
    let choice = egraph::choose(layer, sizes, &Target::cpu("native"), &|_| 0);
    let mut forms: Vec<Form> = choice.candidates.iter().filter(|c| c.legality.is_ok()).map(|c| c.form).collect();
    forms.push(Form::Chunked { q: 3 });
    assert!(forms.len() >= 6, "{}: only {forms:?} are legal", layer.name);
    for form in forms {
        let plan = choice.force(form).unwrap_or_else(|e| panic!("{}: {e}", layer.name));
        let got = forms::run(layer, sizes, inputs, &plan);
        let err = rel_err(ours, &got["out"].data);
        assert!(err < 1e-9, "{} {dims:?} form {form}: relative error {err:e} against the reference", layer.name);
    }
}

/// Perturbs one element of every input in turn; the output must move by far more than
/// the tolerance, and the reference must still agree. Shows no input is ignored by either.
fn perturbation_moves_output(layer: &Layer, dims: &[(&str, usize)], reference: Reference) {
    let sizes = sizes(layer, dims);
    let base = generate_inputs(layer, &sizes, 7);
    let before = interp::run(layer, &sizes, &base)["out"].data.clone();
    for name in base.keys() {
        let mut inputs = base.clone();
        let t = inputs.get_mut(name).expect("input present");
        let i = t.data.len() / 2;
        t.data[i] += 0.25;
        let after = interp::run(layer, &sizes, &inputs)["out"].data.clone();
        let moved = rel_err(&before, &after);
        assert!(moved > 1e3 * TOLERANCE, "{}: perturbing `{name}`[{i}] moved the output by only {moved:e}", layer.name);
        let ours = reference(&inputs);
        let err = rel_err(&ours, &after);
        assert!(err < TOLERANCE, "{}: after perturbing `{name}`[{i}], relative error {err:e}", layer.name);
    }
}

// ---------------------------------------------------------------------------------------
// Upstream elementwise functions (torch.nn.functional).

/// F.softplus with beta = 1, threshold = 20.
fn softplus(x: f64) -> f64 {
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

/// F.silu.
fn silu(x: f64) -> f64 {
    x * (1.0 / (1.0 + (-x).exp()))
}

// ---------------------------------------------------------------------------------------
// Mamba-1: mamba_ssm.ops.selective_scan_interface.selective_scan_ref.

/// Arguments of `selective_scan_ref`, row-major, with their sizes.
struct ScanArgs<'a> {
    u: &'a [f64],          // (B, D, L)
    delta: &'a [f64],      // (B, D, L)
    a: &'a [f64],          // (D, N)
    b: &'a [f64],          // (B, G, N, L)
    c: &'a [f64],          // (B, G, N, L)
    d: &'a [f64],          // (D)
    z: &'a [f64],          // (B, D, L)
    delta_bias: &'a [f64], // (D)
    batch: usize,
    dim: usize,
    groups: usize,
    dstate: usize,
    len: usize,
}

/// `selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True)`.
fn selective_scan_ref(s: &ScanArgs) -> Vec<f64> {
    let (bs, dim, n_, l_) = (s.batch, s.dim, s.dstate, s.len);
    let bdl = |b: usize, d: usize, l: usize| (b * dim + d) * l_ + l;
    // delta = softplus(delta + delta_bias[..., None])
    let mut delta = vec![0.0; bs * dim * l_];
    for b in 0..bs {
        for d in 0..dim {
            for l in 0..l_ {
                delta[bdl(b, d, l)] = softplus(s.delta[bdl(b, d, l)] + s.delta_bias[d]);
            }
        }
    }
    // B = repeat(B, "B G N L -> B (G H) N L", H = dim // G): channel d reads group d / H.
    let per_group = dim / s.groups;
    let bgnl = |b: usize, d: usize, n: usize, l: usize| ((b * s.groups + d / per_group) * n_ + n) * l_ + l;
    // deltaA = exp(einsum('bdl,dn->bdln')), deltaB_u = einsum('bdl,bdnl,bdl->bdln')
    let bdln = |b: usize, d: usize, l: usize, n: usize| ((b * dim + d) * l_ + l) * n_ + n;
    let mut delta_a = vec![0.0; bs * dim * l_ * n_];
    let mut delta_b_u = vec![0.0; bs * dim * l_ * n_];
    for b in 0..bs {
        for d in 0..dim {
            for l in 0..l_ {
                for n in 0..n_ {
                    let dt = delta[bdl(b, d, l)];
                    delta_a[bdln(b, d, l, n)] = (dt * s.a[d * n_ + n]).exp();
                    delta_b_u[bdln(b, d, l, n)] = dt * s.b[bgnl(b, d, n, l)] * s.u[bdl(b, d, l)];
                }
            }
        }
    }
    // x = deltaA[:, :, i] * x + deltaB_u[:, :, i]; y = einsum('bdn,bdn->bd', x, C[:, :, :, i])
    let mut x = vec![0.0; bs * dim * n_];
    let mut y = vec![0.0; bs * dim * l_];
    for i in 0..l_ {
        for b in 0..bs {
            for d in 0..dim {
                let mut acc = 0.0;
                for n in 0..n_ {
                    let xi = &mut x[(b * dim + d) * n_ + n];
                    *xi = delta_a[bdln(b, d, i, n)] * *xi + delta_b_u[bdln(b, d, i, n)];
                    acc += *xi * s.c[bgnl(b, d, n, i)];
                }
                y[bdl(b, d, i)] = acc;
            }
        }
    }
    // out = y + u * D[:, None]; out = out * silu(z)
    let mut out = vec![0.0; bs * dim * l_];
    for b in 0..bs {
        for d in 0..dim {
            for l in 0..l_ {
                let k = bdl(b, d, l);
                out[k] = (y[k] + s.u[k] * s.d[d]) * silu(s.z[k]);
            }
        }
    }
    out
}

fn mamba1_reference(t: &TensorMap) -> Vec<f64> {
    let [batch, groups, dstate, len] = t["B"].shape[..] else { panic!("B is (B, G, N, L)") };
    selective_scan_ref(&ScanArgs {
        u: &t["u"].data,
        delta: &t["delta"].data,
        a: &t["A"].data,
        b: &t["B"].data,
        c: &t["C"].data,
        d: &t["D"].data,
        z: &t["z"].data,
        delta_bias: &t["delta_bias"].data,
        batch,
        dim: t["D"].shape[0],
        groups,
        dstate,
        len,
    })
}

// ---------------------------------------------------------------------------------------
// Mamba-2: the chunked SSD algorithm of ssd_minimal_discrete, as called by
// mamba_chunk_scan_combined (dt = softplus(dt + dt_bias); X = x dt, A = A dt), then
// `+ x D` and `* silu(z)` as in its chunk_scan_ref. Heads map to groups as h / (H / G).

fn chunk_size(len: usize) -> usize {
    // Never a divisor of the lengths tested, so the last chunk is ragged.
    match len {
        0..=7 => 3,
        8..=63 => 8,
        _ => 48,
    }
}

fn mamba2_reference(t: &TensorMap) -> Vec<f64> {
    mamba2_chunked(t, chunk_size(t["x"].shape[1]))
}

/// The SSD algorithm with chunks of `q` steps, the last one ragged.
fn mamba2_chunked(t: &TensorMap, q: usize) -> Vec<f64> {
    let [bs, l_, hs, ps] = t["x"].shape[..] else { panic!("x is (B, L, H, P)") };
    let [_, _, gs, ns] = t["B"].shape[..] else { panic!("B is (B, L, G, N)") };
    let (x, dt_in, a, bm, cm, dd, z, dt_bias) = (
        &t["x"].data,
        &t["dt"].data,
        &t["A"].data,
        &t["B"].data,
        &t["C"].data,
        &t["D"].data,
        &t["z"].data,
        &t["dt_bias"].data,
    );
    let xi = |b: usize, l: usize, h: usize, p: usize| ((b * l_ + l) * hs + h) * ps + p;
    let gi = |b: usize, l: usize, g: usize, n: usize| ((b * l_ + l) * gs + g) * ns + n;
    let mut out = vec![0.0; x.len()];
    for b in 0..bs {
        for h in 0..hs {
            let g = h / (hs / gs);
            // Discrete inputs of ssd_minimal_discrete: X = x dt, A = A dt.
            let dt: Vec<f64> = (0..l_).map(|l| softplus(dt_in[(b * l_ + l) * hs + h] + dt_bias[h])).collect();
            let ad: Vec<f64> = dt.iter().map(|d| a[h] * d).collect();
            let xd = |l: usize, p: usize| x[xi(b, l, h, p)] * dt[l];
            let cb = |l: usize, s: usize| (0..ns).map(|n| cm[gi(b, l, g, n)] * bm[gi(b, s, g, n)]).sum::<f64>();
            let chunks: Vec<(usize, usize)> = (0..l_).step_by(q).map(|s0| (s0, (s0 + q).min(l_))).collect();
            // A_cumsum within each chunk.
            let cumsum: Vec<Vec<f64>> = chunks
                .iter()
                .map(|&(s0, s1)| {
                    let mut acc = 0.0;
                    (s0..s1)
                        .map(|l| {
                            acc += ad[l];
                            acc
                        })
                        .collect()
                })
                .collect();
            let mut y = vec![0.0; l_ * ps];
            // 1. Intra-chunk (diagonal blocks): Y_diag = (C B^T o exp(segsum(A))) X.
            for &(s0, s1) in &chunks {
                for l in s0..s1 {
                    // segsum[l, s] = A[s+1] + ... + A[l], the stable form.
                    let mut seg = 0.0f64;
                    for s in (s0..=l).rev() {
                        let w = cb(l, s) * seg.exp();
                        for p in 0..ps {
                            y[l * ps + p] += w * xd(s, p);
                        }
                        seg += ad[s];
                    }
                }
            }
            // 2. Each chunk's final state from its own inputs: states[c] = sum_l B_l decay X_l.
            let mut states = vec![vec![0.0; ps * ns]; chunks.len() + 1]; // states[0]: initial, zero
            for (c, &(s0, s1)) in chunks.iter().enumerate() {
                let last = cumsum[c][s1 - s0 - 1];
                for l in s0..s1 {
                    let decay = (last - cumsum[c][l - s0]).exp();
                    for p in 0..ps {
                        for n in 0..ns {
                            states[c + 1][p * ns + n] += bm[gi(b, l, g, n)] * decay * xd(l, p);
                        }
                    }
                }
            }
            // 3. Inter-chunk recurrence: new_states[z] = sum_{c <= z} exp(segsum(chunk sums))[z, c] states[c].
            let mut padded = vec![0.0];
            padded.extend(cumsum.iter().map(|cs| cs[cs.len() - 1]));
            let mut entering = vec![vec![0.0; ps * ns]; chunks.len()];
            for (zc, st) in entering.iter_mut().enumerate() {
                for c in 0..=zc {
                    let decay = padded[c + 1..=zc].iter().sum::<f64>().exp();
                    for (e, s) in st.iter_mut().zip(&states[c]) {
                        *e += decay * s;
                    }
                }
            }
            // 4. State to output per chunk: Y_off = C state exp(A_cumsum).
            for (c, &(s0, s1)) in chunks.iter().enumerate() {
                for l in s0..s1 {
                    let decay = cumsum[c][l - s0].exp();
                    for p in 0..ps {
                        let cs: f64 = (0..ns).map(|n| cm[gi(b, l, g, n)] * entering[c][p * ns + n]).sum();
                        y[l * ps + p] += cs * decay;
                    }
                }
            }
            for l in 0..l_ {
                for p in 0..ps {
                    let k = xi(b, l, h, p);
                    out[k] = (y[l * ps + p] + x[k] * dd[h]) * silu(z[k]);
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// S4D: state-spaces/s4 models/s4/s4d.py, S4DKernel.forward then the convolution and the
// D term of S4D.forward (the FFT convolution written as its direct causal sum).

#[derive(Clone, Copy)]
struct Cx(f64, f64);

impl Cx {
    fn mul(self, o: Cx) -> Cx {
        Cx(self.0 * o.0 - self.1 * o.1, self.0 * o.1 + self.1 * o.0)
    }
    fn div(self, o: Cx) -> Cx {
        let den = o.0 * o.0 + o.1 * o.1;
        Cx((self.0 * o.0 + self.1 * o.1) / den, (self.1 * o.0 - self.0 * o.1) / den)
    }
    fn exp(self) -> Cx {
        let r = self.0.exp();
        Cx(r * self.1.cos(), r * self.1.sin())
    }
    fn scale(self, k: f64) -> Cx {
        Cx(self.0 * k, self.1 * k)
    }
}

fn s4d_reference(t: &TensorMap) -> Vec<f64> {
    let [bs, hs, l_] = t["u"].shape[..] else { panic!("u is (B, H, L)") };
    let half = t["log_A_real"].shape[1];
    let (u, log_dt, log_a_real, a_imag, c_view, dd) =
        (&t["u"].data, &t["log_dt"].data, &t["log_A_real"].data, &t["A_imag"].data, &t["C"].data, &t["D"].data);
    // K[h, l] = 2 Re(sum_n C'_n exp(dtA_n l)), C' = C (exp(dtA) - 1) / A.
    let mut kernel = vec![0.0; hs * l_];
    for h in 0..hs {
        let dt = log_dt[h].exp();
        for n in 0..half {
            let a = Cx(-log_a_real[h * half + n].exp(), a_imag[h * half + n]);
            let c = Cx(c_view[(h * half + n) * 2], c_view[(h * half + n) * 2 + 1]);
            let dta = a.scale(dt);
            let e = dta.exp();
            let c = c.mul(Cx(e.0 - 1.0, e.1)).div(a);
            for l in 0..l_ {
                kernel[h * l_ + l] += 2.0 * c.mul(dta.scale(l as f64).exp()).0;
            }
        }
    }
    // y = causal conv(u, K) + u D.
    let mut out = vec![0.0; u.len()];
    for b in 0..bs {
        for h in 0..hs {
            let row = (b * hs + h) * l_;
            for l in 0..l_ {
                let conv: f64 = (0..=l).map(|k| kernel[h * l_ + l - k] * u[row + k]).sum();
                out[row + l] = conv + u[row + l] * dd[h];
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Vim (bimamba v2): out = scan(u, ...) + flip(scan(flip(u_b), flip(delta_b), A_b,
// flip(B_b), flip(C_b), D_b, flip(z), delta_bias_b)), with scan = selective_scan_ref.

/// Reverses the last (time) axis of a row-major tensor.
fn flip_last(data: &[f64], len: usize) -> Vec<f64> {
    data.chunks(len).flat_map(|row| row.iter().rev().copied()).collect()
}

fn vim_reference(t: &TensorMap) -> Vec<f64> {
    let [batch, dstate, len] = t["B"].shape[..] else { panic!("B is (B, N, L)") };
    let dim = t["D"].shape[0];
    // B, C of shape (B, N, L) are selective_scan_ref's 3-d case: one group.
    let forward = selective_scan_ref(&ScanArgs {
        u: &t["u"].data,
        delta: &t["delta"].data,
        a: &t["A"].data,
        b: &t["B"].data,
        c: &t["C"].data,
        d: &t["D"].data,
        z: &t["z"].data,
        delta_bias: &t["delta_bias"].data,
        batch,
        dim,
        groups: 1,
        dstate,
        len,
    });
    let f = |name: &str| flip_last(&t[name].data, len);
    let backward = selective_scan_ref(&ScanArgs {
        u: &f("u_b"),
        delta: &f("delta_b"),
        a: &t["A_b"].data,
        b: &f("B_b"),
        c: &f("C_b"),
        d: &t["D_b"].data,
        z: &f("z"),
        delta_bias: &t["delta_bias_b"].data,
        batch,
        dim,
        groups: 1,
        dstate,
        len,
    });
    forward.iter().zip(flip_last(&backward, len)).map(|(a, b)| a + b).collect()
}

// ---------------------------------------------------------------------------------------
// The cases.

const LENGTHS: [usize; 3] = [1, 7, 37];
const SEEDS: [u64; 3] = [1, 2, 3];

fn sweep(layer: &Layer, shapes: &[&[(&str, usize)]], long: &[&[(&str, usize)]], reference: Reference) {
    let mut worst = 0.0f64;
    for shape in shapes {
        for len in LENGTHS {
            for seed in SEEDS {
                let mut dims = shape.to_vec();
                dims.push(("L", len));
                worst = worst.max(compare(layer, &dims, seed, reference));
            }
        }
    }
    for shape in long {
        for seed in [11, 12] {
            let mut dims = shape.to_vec();
            dims.push(("L", 500));
            worst = worst.max(compare(layer, &dims, seed, reference));
        }
    }
    eprintln!("{}: max relative error {worst:e}", layer.name);
}

#[test]
fn mamba1_matches_selective_scan_ref() {
    let layer = mamba1_layer();
    sweep(
        &layer,
        &[&[("B", 1), ("D", 5), ("G", 1)], &[("B", 2), ("D", 6), ("G", 2)], &[("B", 2), ("D", 7), ("G", 1)]],
        &[&[("B", 1), ("D", 3), ("G", 1)], &[("B", 2), ("D", 2), ("G", 2)]],
        mamba1_reference,
    );
}

#[test]
fn mamba2_matches_chunked_ssd() {
    let layer = mamba2_layer();
    sweep(
        &layer,
        &[&[("B", 1), ("H", 3), ("P", 2), ("G", 1)], &[("B", 2), ("H", 4), ("P", 3), ("G", 2)]],
        &[&[("B", 1), ("H", 3), ("P", 2), ("G", 1)], &[("B", 2), ("H", 4), ("P", 1), ("G", 2)]],
        mamba2_reference,
    );
}

#[test]
fn s4d_matches_s4d_kernel_convolution() {
    let layer = s4d_layer();
    sweep(&layer, &[&[("B", 1), ("H", 5)], &[("B", 2), ("H", 3)]], &[&[("B", 2), ("H", 2)]], s4d_reference);
}

#[test]
fn vim_matches_two_flipped_selective_scans() {
    let layer = vim_layer();
    sweep(&layer, &[&[("B", 1), ("D", 5)], &[("B", 2), ("D", 7)]], &[&[("B", 1), ("D", 3)]], vim_reference);
}

#[test]
fn mamba1_every_input_matters() {
    perturbation_moves_output(&mamba1_layer(), &[("B", 2), ("D", 6), ("G", 2), ("L", 7)], mamba1_reference);
}

#[test]
fn mamba2_every_input_matters() {
    perturbation_moves_output(&mamba2_layer(), &[("B", 2), ("H", 4), ("P", 3), ("G", 2), ("L", 7)], mamba2_reference);
}

#[test]
fn s4d_every_input_matters() {
    perturbation_moves_output(&s4d_layer(), &[("B", 2), ("H", 3), ("L", 7)], s4d_reference);
}

#[test]
fn vim_every_input_matters() {
    perturbation_moves_output(&vim_layer(), &[("B", 2), ("D", 5), ("L", 7)], vim_reference);
}

/// The chunked Mamba-2 port must not depend on its chunk size: one chunk per step, a
/// ragged split, exactly one chunk and one chunk longer than the sequence all agree.
#[test]
fn mamba2_reference_is_chunk_independent() {
    let layer = mamba2_layer();
    let sizes = sizes(&layer, &[("B", 2), ("H", 4), ("P", 2), ("G", 2), ("L", 37)]);
    let t = generate_inputs(&layer, &sizes, 5);
    let base = mamba2_chunked(&t, chunk_size(37));
    for q in [1, 5, 37, 64] {
        let err = rel_err(&base, &mamba2_chunked(&t, q));
        assert!(err < TOLERANCE, "chunk size {q} vs {}: relative error {err:e}", chunk_size(37));
    }
}
