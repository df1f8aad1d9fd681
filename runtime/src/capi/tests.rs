//! The C ABI called as C would call it, on a layer whose kernel is a Rust function.

#![allow(unsafe_code)] // The tests call the C ABI through raw pointers, as C would.

use super::*;
use crate::manifest::Manifest;
use std::ffi::CString;

/// The test layer's kernel: `y[b, l] = 2 x[b, l]` for sequences b in `[begin, end)`.
unsafe extern "C" fn twice(bufs: *const *const u8, dims: *const i64, begin: i64, end: i64) {
    // Sound: ssmc_layer_run checked both buffers against [B, L] before calling.
    unsafe {
        let (x, y) = (*bufs as *const f32, *bufs.add(1) as *mut f32);
        let l = *dims.add(1);
        for i in begin * l..end * l {
            *y.offset(i as isize) = 2.0 * *x.offset(i as isize);
        }
    }
}

const MANIFEST: &str = r#"{
    "ssmc_version": "0.1.0", "layer": "twice", "target": "cpu", "arch": "native",
    "form": "recurrent", "entry": "twice", "files": {},
    "dims": [{"name": "B", "role": "batch", "size": null}, {"name": "L", "role": "time", "size": null}],
    "tensors": [
        {"name": "x", "io": "input", "dtype": "f32", "shape": ["B", "L"]},
        {"name": "y", "io": "output", "dtype": "f32", "shape": ["B", "L"]}
    ],
    "launch": {"kind": "range", "work_items": "B"}, "specialized": "generic"
}"#;

/// A layer whose kernel is `twice`, in this test process.
fn layer() -> SsmcLayer {
    let manifest: Manifest = serde_json::from_str(MANIFEST).expect("manifest");
    let lib = libloading::os::unix::Library::this().into();
    SsmcLayer(CpuLayer { manifest, entry: twice, host: Vec::new(), _lib: lib })
}

const SHAPE: [i64; 2] = [3, 5];

/// The tensors of a good call: x = 0..15, y poisoned with -1.
struct Call {
    x: Vec<f32>,
    y: Vec<f32>,
    names: [CString; 2],
}

impl Call {
    fn new() -> Self {
        Call { x: (0..15).map(|i| i as f32).collect(), y: vec![-1.0; 15], names: [c"x".into(), c"y".into()] }
    }

    fn tensors(&mut self) -> [SsmcTensor; 2] {
        let t = |name: &CString, data: *mut f32| SsmcTensor {
            name: name.as_ptr(),
            dtype: 0,
            rank: 2,
            shape: SHAPE.as_ptr(),
            data: data.cast(),
            bytes: 60,
        };
        [t(&self.names[0], self.x.as_mut_ptr()), t(&self.names[1], self.y.as_mut_ptr())]
    }

    fn untouched(&self) -> bool {
        self.y.iter().all(|&v| v == -1.0)
    }
}

/// Runs the layer on `tensors` and returns the code and message.
fn run(layer: &SsmcLayer, tensors: &[SsmcTensor]) -> (c_int, String) {
    let mut err = [0 as c_char; 512];
    // Sound: every pointer in `tensors` is built by the test from live buffers.
    let code = unsafe { ssmc_layer_run(layer, tensors.as_ptr(), tensors.len(), 2, err.as_mut_ptr(), err.len()) };
    // Sound: ssmc_layer_run NUL-terminates within `err`.
    let message = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned();
    (code, message)
}

#[test]
fn a_good_call_runs_and_clears_the_message() {
    let layer = layer();
    let mut call = Call::new();
    let tensors = call.tensors();
    let mut err = [b'x' as c_char; 16];
    // Sound: all pointers are live buffers of the test.
    let code = unsafe { ssmc_layer_run(&layer, tensors.as_ptr(), 2, 0, err.as_mut_ptr(), err.len()) };
    assert_eq!(code, SSMC_OK);
    assert_eq!(err[0], 0, "message not cleared on success");
    assert_eq!(call.y, (0..15).map(|i| 2.0 * i as f32).collect::<Vec<_>>());
}

#[test]
fn null_arguments_are_refused() {
    let layer = layer();
    let mut call = Call::new();
    let tensors = call.tensors();
    let mut err = [0 as c_char; 256];
    // Sound: null layer and null tensors are what is being tested; err is live.
    let code = unsafe { ssmc_layer_run(std::ptr::null(), tensors.as_ptr(), 2, 0, err.as_mut_ptr(), err.len()) };
    assert_eq!(code, SSMC_ERR_ARGS);
    let code = unsafe { ssmc_layer_run(&layer, std::ptr::null(), 2, 0, err.as_mut_ptr(), err.len()) };
    assert_eq!(code, SSMC_ERR_ARGS);
    assert_eq!(unsafe { CStr::from_ptr(err.as_ptr()) }.to_str(), Ok("null `tensors` with count 2"));
    // A null message buffer still gets the code.
    let code = unsafe { ssmc_layer_run(&layer, std::ptr::null(), 2, 0, std::ptr::null_mut(), 99) };
    assert_eq!(code, SSMC_ERR_ARGS);
    let mut t = call.tensors();
    t[1].name = std::ptr::null();
    assert_eq!(run(&layer, &t), (SSMC_ERR_ARGS, "tensor #1: null name".to_string()));
    let mut t = call.tensors();
    t[0].shape = std::ptr::null();
    assert_eq!(run(&layer, &t), (SSMC_ERR_ARGS, "tensor `x`: null shape with rank 2".to_string()));
    let mut t = call.tensors();
    t[1].data = std::ptr::null_mut();
    assert_eq!(run(&layer, &t), (SSMC_ERR_TENSORS, "tensor `y`: null data pointer".to_string()));
    assert!(call.untouched());
}

#[test]
fn bad_names_sizes_codes_and_threads_are_argument_errors() {
    let layer = layer();
    let mut call = Call::new();
    let bad = [0xffu8, 0];
    let negative = [3i64, -5];
    let mut t = call.tensors();
    t[0].name = bad.as_ptr().cast();
    t[1].shape = negative.as_ptr();
    let (code, message) = run(&layer, &t);
    assert_eq!(code, SSMC_ERR_ARGS);
    assert_eq!(message, "tensor #0: name is not UTF-8\ntensor `y`: negative size in shape [3, -5]");
    let mut t = call.tensors();
    t[0].dtype = 7;
    t[1].rank = -1;
    let (code, message) = run(&layer, &t);
    assert_eq!(code, SSMC_ERR_ARGS);
    assert!(message.contains("tensor `x`: unknown dtype code 7"), "{message}");
    assert!(message.contains("tensor `y`: rank -1 is out of range (0 to 16)"), "{message}");
    let t = call.tensors();
    let mut err = [0 as c_char; 64];
    // Sound: live buffers; the negative thread count is what is tested.
    let code = unsafe { ssmc_layer_run(&layer, t.as_ptr(), 2, -3, err.as_mut_ptr(), err.len()) };
    assert_eq!(code, SSMC_ERR_ARGS);
    assert_eq!(unsafe { CStr::from_ptr(err.as_ptr()) }.to_str(), Ok("negative thread count -3"));
    assert!(call.untouched());
}

#[test]
fn tensors_that_do_not_fit_the_manifest_write_nothing() {
    let layer = layer();
    let mut call = Call::new();
    let x = call.x.as_mut_ptr();

    let mut t = call.tensors();
    // Sound: one byte into a live buffer; the kernel must never see it.
    t[0].data = unsafe { x.cast::<u8>().add(1) }.cast();
    t[0].bytes = 60;
    let (code, message) = run(&layer, &t);
    assert_eq!(code, SSMC_ERR_TENSORS);
    assert!(
        message.starts_with("tensor `x`: data pointer 0x") && message.ends_with("is not aligned to 4 bytes"),
        "{message}"
    );

    let mut t = call.tensors();
    t[0].dtype = 1;
    assert_eq!(run(&layer, &t), (SSMC_ERR_TENSORS, "tensor `x`: expected dtype f32, got f64".to_string()));

    let mut t = call.tensors();
    t[1].rank = 1;
    t[1].bytes = 12;
    assert_eq!(run(&layer, &t), (SSMC_ERR_TENSORS, "tensor `y`: expected 2 axes [B, L], got 1 axes [3]".to_string()));

    let t = call.tensors();
    assert_eq!(run(&layer, &t[..1]), (SSMC_ERR_TENSORS, "missing output `y` with shape [B, L]".to_string()));

    let wrong = [3i64, 4];
    let mut t = call.tensors();
    t[1].shape = wrong.as_ptr();
    t[1].bytes = 48;
    assert_eq!(
        run(&layer, &t),
        (SSMC_ERR_TENSORS, "tensor `y`: expected shape [B, L] with L=5 (from tensor `x`), got [3, 4]".to_string())
    );

    let mut t = call.tensors();
    t[0].bytes = 56;
    assert_eq!(run(&layer, &t), (SSMC_ERR_TENSORS, "tensor `x`: shape [3, 5] needs 60 bytes, got 56".to_string()));

    // Sizes whose product overflows must not wrap around to a size that fits.
    let huge = [1i64 << 62, 4];
    let mut t = call.tensors();
    for t in &mut t {
        t.shape = huge.as_ptr();
        t.bytes = 0;
    }
    let (code, message) = run(&layer, &t);
    assert_eq!(code, SSMC_ERR_TENSORS);
    assert!(message.contains("tensor `x`: shape [4611686018427387904, 4] does not fit in memory"), "{message}");

    assert!(call.untouched());
}

#[test]
fn messages_are_truncated_and_nul_terminated() {
    let mut err = [b'#' as c_char; 8];
    // Sound: `err` is a live 8-byte buffer; each call is given at most its length.
    unsafe { write_message(err.as_mut_ptr(), 5, "abcdefgh") };
    assert_eq!(&err[..6], [b'a', b'b', b'c', b'd', 0, b'#'].map(|b| b as c_char));
    unsafe { write_message(err.as_mut_ptr(), 3, "aé!") };
    assert_eq!(&err[..3], [b'a', 0, b'c'].map(|b| b as c_char), "cut inside a character");
    unsafe { write_message(err.as_mut_ptr(), 1, "abc") };
    assert_eq!(err[0], 0);
    unsafe { write_message(err.as_mut_ptr(), 0, "abc") };
    assert_eq!(err[0], 0);
    unsafe { write_message(std::ptr::null_mut(), 8, "abc") };
}

#[test]
fn a_panic_becomes_an_internal_error() {
    let r: Result<(), Failure> = guarded(|| panic!("boom"));
    assert_eq!(r, Err(Failure { code: SSMC_ERR_INTERNAL, message: "internal error in ssmc-runtime: boom".into() }));
}

/// Opens `dir` and returns whether a layer came back, and the message.
fn open(dir: *const c_char) -> (bool, String) {
    let mut err = [0 as c_char; 512];
    // Sound: `dir` is null or a live C string; `err` is a live buffer.
    let layer = unsafe { ssmc_layer_open(dir, err.as_mut_ptr(), err.len()) };
    let opened = !layer.is_null();
    unsafe { ssmc_layer_close(layer) };
    (opened, unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned())
}

#[test]
fn open_reports_why_it_failed() {
    assert_eq!(open(std::ptr::null()), (false, "null artifact directory".to_string()));
    let dir = std::env::temp_dir().join(format!("ssmc-capi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let c = CString::new(dir.to_str().expect("utf-8 temp dir")).expect("no NUL");
    let (opened, message) = open(c.as_ptr());
    assert!(!opened);
    assert!(message.starts_with("cannot read ") && message.contains("manifest.json"), "{message}");
    std::fs::write(dir.join("manifest.json"), "{\"layer\": 3}").expect("write");
    let (opened, message) = open(c.as_ptr());
    assert!(!opened);
    assert!(message.starts_with("bad artifact: "), "{message}");
    // A GPU artifact, or one for a GPU ssmc does not know, is not opened as a CPU library.
    let ptx = MANIFEST.replace(r#""target": "cpu", "arch": "native""#, r#""target": "ptx", "arch": "sm_90""#);
    std::fs::write(dir.join("manifest.json"), ptx).expect("write");
    let (opened, message) = open(c.as_ptr());
    assert!(!opened);
    assert!(message.contains("holds a cuda artifact (sm_90), not a cpu one"), "{message}");
    assert!(message.contains("`ssmc build --target cpu`"), "{message}");
    let old = MANIFEST.replace(r#""target": "cpu", "arch": "native""#, r#""target": "ptx", "arch": "sm_70""#);
    std::fs::write(dir.join("manifest.json"), old).expect("write");
    let (opened, message) = open(c.as_ptr());
    assert!(!opened);
    assert!(message.contains("unknown GPU architecture `sm_70`"), "{message}");
    std::fs::remove_dir_all(&dir).expect("clean up");
    // Sound: closing null is allowed.
    unsafe { ssmc_layer_close(std::ptr::null_mut()) };
}

#[test]
fn version_is_the_crate_version() {
    // Sound: ssmc_version returns a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(ssmc_version()) };
    assert_eq!(v.to_str(), Ok(env!("CARGO_PKG_VERSION")));
}

#[test]
fn an_output_that_overlaps_an_input_is_refused() {
    let layer = layer();
    let mut call = Call::new();
    // y is x itself, then y starts in the middle of x: both share bytes with x. The call
    // is refused before the kernel runs, so the bytes past x are never touched.
    for offset in [0usize, 7] {
        let mut t = call.tensors();
        // Sound: the offset stays inside x's 15 floats.
        t[1].data = unsafe { call.x.as_mut_ptr().add(offset) }.cast();
        let (code, message) = run(&layer, &t);
        assert_eq!(code, SSMC_ERR_TENSORS, "{message}");
        assert_eq!(
            message,
            "output `y` overlaps input `x` in memory: outputs must not share bytes with any other tensor"
        );
    }
    assert!(call.x.iter().enumerate().all(|(i, &v)| v == i as f32), "x was written");
    // Adjacent, not overlapping: y right after x in one allocation runs.
    let mut both: Vec<f32> = (0..15).map(|i| i as f32).chain([-1.0; 15]).collect();
    let mut t = call.tensors();
    t[0].data = both.as_mut_ptr().cast();
    // Sound: both holds 30 floats; y is the second 15.
    t[1].data = unsafe { both.as_mut_ptr().add(15) }.cast();
    assert_eq!(run(&layer, &t), (SSMC_OK, String::new()));
    assert_eq!(both[15..], (0..15).map(|i| 2.0 * i as f32).collect::<Vec<_>>()[..]);
}

#[test]
fn thread_counts_above_the_bound_are_refused_and_the_bound_runs() {
    let layer = layer();
    let mut call = Call::new();
    let mut err = [0 as c_char; 128];
    for threads in [100_000, crate::MAX_THREADS as c_int + 1] {
        let t = call.tensors();
        // Sound: live buffers; the thread count is what is tested.
        let code = unsafe { ssmc_layer_run(&layer, t.as_ptr(), 2, threads, err.as_mut_ptr(), err.len()) };
        assert_eq!(code, SSMC_ERR_ARGS);
        let message = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned();
        assert!(message.contains(&format!("thread count {threads} is more than SSMC_MAX_THREADS (1024)")), "{message}");
        assert!(call.untouched());
    }
    let t = call.tensors();
    // Sound: as above.
    let code = unsafe { ssmc_layer_run(&layer, t.as_ptr(), 2, 1024, err.as_mut_ptr(), err.len()) };
    assert_eq!(code, SSMC_OK);
    assert_eq!(call.y, (0..15).map(|i| 2.0 * i as f32).collect::<Vec<_>>());
}

#[test]
fn the_header_states_the_thread_bound() {
    let header = include_str!("../../include/ssmc_runtime.h");
    assert!(
        header.contains(&format!("#define SSMC_MAX_THREADS {}", crate::MAX_THREADS)),
        "header and MAX_THREADS differ"
    );
}

/// Binding a grouped layer: heads that the groups do not divide are refused, since the
/// kernels would read the B of group h / (H / G), past the last group.
#[test]
fn groups_that_do_not_divide_heads_are_refused() {
    let manifest: Manifest = serde_json::from_str(
        r#"{
        "ssmc_version": "0.1.0", "layer": "g", "target": "cpu", "arch": "native",
        "form": "recurrent", "entry": "g", "files": {},
        "dims": [{"name": "H", "role": "head", "size": null}, {"name": "G", "role": "group", "size": null}],
        "tensors": [
            {"name": "x", "io": "input", "dtype": "f32", "shape": ["H"]},
            {"name": "b", "io": "input", "dtype": "f32", "shape": ["G"]},
            {"name": "y", "io": "output", "dtype": "f32", "shape": ["H"]}
        ],
        "launch": {"kind": "range", "work_items": "H"}, "specialized": "generic"
    }"#,
    )
    .expect("manifest");
    let (x, b, mut y) = (vec![0f32; 4], vec![0f32; 3], vec![0f32; 4]);
    let refs = [TensorRef::input("x", &x, &[4]), TensorRef::input("b", &b, &[3]), TensorRef::output("y", &mut y, &[4])];
    match crate::bind::bind(&manifest, &refs) {
        Err(Error::Tensors(p)) => {
            assert_eq!(p, ["H=4 is not a multiple of G=3: each group must hold the same number of heads"])
        }
        other => panic!("H=4, G=3 was bound: {other:?}"),
    }
    let (b2, mut y2) = (vec![0f32; 2], vec![0f32; 4]);
    let refs =
        [TensorRef::input("x", &x, &[4]), TensorRef::input("b", &b2, &[2]), TensorRef::output("y", &mut y2, &[4])];
    assert_eq!(crate::bind::bind(&manifest, &refs).expect("H=4, G=2 binds"), [4, 2]);
}
