//! The GPU entry points of the C ABI, called as C would call them, on a PTX artifact
//! written here. Without a GPU every check before the GPU runs and the missing GPU is
//! `SSMC_ERR_GPU`; with one, host pointers are refused by name.

#![allow(unsafe_code)] // The tests call the C ABI through raw pointers, as C would.

use super::*;
use crate::capi::{SSMC_ERR_ARGS, SSMC_ERR_TENSORS};
use std::ffi::{CStr, CString};

const MANIFEST: &str = r#"{
    "ssmc_version": "0.1.0", "layer": "twice", "target": "ptx", "arch": "sm_90",
    "form": "recurrent", "entry": "twice", "files": {"ptx": "twice.ptx"},
    "dims": [{"name": "B", "role": "batch", "size": null}, {"name": "L", "role": "time", "size": null}],
    "tensors": [
        {"name": "x", "io": "input", "dtype": "f32", "shape": ["B", "L"]},
        {"name": "y", "io": "output", "dtype": "f32", "shape": ["B", "L"]}
    ],
    "launch": {"kind": "grid", "work_items": "B", "threads": 32, "items_per_block": 32, "shared_bytes": "0"},
    "specialized": "generic"
}"#;

const PTX: &str = ".version 8.0\n.target sm_90\n.address_size 64\n\
    .visible .entry twice(.param .u64 a, .param .u64 b, .param .u64 c, .param .u64 d)\n{\n\tret;\n}\n";

/// A PTX artifact directory, removed on drop.
struct Artifact(std::path::PathBuf);

impl Artifact {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ssmc-capi-gpu-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("manifest.json"), MANIFEST).expect("manifest");
        std::fs::write(dir.join("twice.ptx"), PTX).expect("ptx");
        Artifact(dir)
    }

    fn c_path(&self) -> CString {
        CString::new(self.0.to_str().expect("utf-8 temp dir")).expect("no NUL")
    }
}

impl Drop for Artifact {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the layer on `x` and `y` with `y_shape`; returns the code and the message.
fn run(layer: *const SsmcGpuLayer, x: &mut [f32], y: &mut [f32], y_shape: &[i64; 2]) -> (c_int, String) {
    let names = [c"x", c"y"];
    let shape = [3i64, 5];
    let tensors = [
        SsmcTensor {
            name: names[0].as_ptr(),
            dtype: 0,
            rank: 2,
            shape: shape.as_ptr(),
            data: x.as_mut_ptr().cast(),
            bytes: 60,
        },
        SsmcTensor {
            name: names[1].as_ptr(),
            dtype: 0,
            rank: 2,
            shape: y_shape.as_ptr(),
            data: y.as_mut_ptr().cast(),
            bytes: y.len() * 4,
        },
    ];
    let mut err = vec![0 as c_char; 512];
    // Sound: live tensors and a 512-byte message buffer.
    let code = unsafe { ssmc_gpu_layer_run(layer, tensors.as_ptr(), 2, std::ptr::null_mut(), err.as_mut_ptr(), 512) };
    // Sound: the entry point NUL-terminates the message.
    let msg = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned();
    (code, msg)
}

#[test]
fn the_gpu_entry_points_check_before_the_gpu_and_name_what_is_wrong() {
    let mut err = vec![0 as c_char; 256];
    // Sound: a null directory and a 256-byte message buffer.
    let null = unsafe { ssmc_gpu_layer_open(std::ptr::null(), err.as_mut_ptr(), 256) };
    assert!(null.is_null());
    // Sound: NUL-terminated by the entry point.
    assert_eq!(unsafe { CStr::from_ptr(err.as_ptr()) }.to_str(), Ok("null artifact directory"));

    let art = Artifact::new("checks");
    let path = art.c_path();
    // Sound: a NUL-terminated path and a 256-byte message buffer.
    let layer = unsafe { ssmc_gpu_layer_open(path.as_ptr(), err.as_mut_ptr(), 256) };
    // Sound: NUL-terminated by the entry point.
    assert!(!layer.is_null(), "{:?}", unsafe { CStr::from_ptr(err.as_ptr()) });

    let (mut x, mut y) = (vec![1.0f32; 15], vec![-1.0f32; 18]);
    // A mis-shaped output, refused by name before the GPU is touched.
    let (code, msg) = run(layer, &mut x, &mut y, &[3, 6]);
    assert_eq!(code, SSMC_ERR_TENSORS, "{msg}");
    assert!(msg.contains("tensor `y`"), "{msg}");

    // Shapes that fit, at host addresses: no GPU is SSMC_ERR_GPU; a GPU refuses the host
    // pointer by name. Either way nothing ran: y keeps its poison.
    let (code, msg) = run(layer, &mut x, &mut y[..15], &[3, 5]);
    let no_gpu =
        code == SSMC_ERR_GPU && (msg.starts_with("no CUDA driver/GPU") || msg.contains("without its `cuda` feature"));
    let refused = code == SSMC_ERR_TENSORS && msg.contains("tensor `x`") && msg.contains("not GPU memory");
    assert!(no_gpu || refused, "code {code}: {msg}");
    assert!(y.iter().all(|&v| v == -1.0), "an output was written");

    // A null layer is an argument error; closing null is a no-op.
    let (code, msg) = run(std::ptr::null(), &mut x, &mut y[..15], &[3, 5]);
    assert_eq!((code, msg.as_str()), (SSMC_ERR_ARGS, "null layer"));
    // Sound: from ssmc_gpu_layer_open, closed once; null is ignored.
    unsafe {
        ssmc_gpu_layer_close(layer);
        ssmc_gpu_layer_close(std::ptr::null_mut());
    }
}
