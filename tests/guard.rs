//! Guard pages for native runs: each buffer handed to a kernel lies flush against a page
//! that may not be touched (`PROT_NONE`), right after its last byte or right before its
//! first, so that a kernel reading or writing one element out of bounds faults (SIGSEGV)
//! instead of reading a neighbour's bytes. A fault kills the test process, which the test
//! runner reports as a failure.
#![allow(dead_code)]
// mmap, mprotect and raw views of the mapping are the point of this module: nothing in
// safe Rust places a buffer against an inaccessible page.
#![allow(unsafe_code)]

use ssmc_runtime::{DType, TensorRef};

/// Where the guard page goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Right after the last byte: catches reads and writes past the end.
    After,
    /// Right before the first byte: catches reads and writes before the start.
    Before,
}

impl Place {
    /// Both placements.
    pub const BOTH: [Place; 2] = [Place::After, Place::Before];
}

/// A buffer of `bytes` bytes inside its own mapping, against a guard page.
pub struct Guarded {
    base: *mut u8,
    map_len: usize,
    data: *mut u8,
    bytes: usize,
}

fn page() -> usize {
    // Sound: sysconf only reads a system constant.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|n| *n > 0).unwrap_or(4096)
}

impl Guarded {
    /// A zeroed buffer of `bytes` bytes with its guard page at `place`.
    pub fn new(bytes: usize, place: Place) -> Self {
        let page = page();
        let body = bytes.div_ceil(page) * page;
        let map_len = body + page;
        // Sound: a fresh anonymous private mapping, no file, no fixed address.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(base != libc::MAP_FAILED, "mmap of {map_len} bytes failed");
        let base = base.cast::<u8>();
        let (guard, data) = match place {
            // The data ends where the guard page begins.
            // Sound (both): offsets within the mapping of map_len bytes.
            Place::After => unsafe { (base.add(body), base.add(body - bytes)) },
            // The data begins where the guard page ends.
            Place::Before => unsafe { (base, base.add(page)) },
        };
        // Sound: `guard` is one page-aligned page of the mapping.
        let rc = unsafe { libc::mprotect(guard.cast(), page, libc::PROT_NONE) };
        assert_eq!(rc, 0, "mprotect of the guard page failed");
        Guarded { base, map_len, data, bytes }
    }

    /// A guarded copy of `src`.
    pub fn copy_of(src: &[u8], place: Place) -> Self {
        let mut g = Guarded::new(src.len(), place);
        g.bytes_mut().copy_from_slice(src);
        g
    }

    /// The first byte.
    pub fn ptr(&self) -> *const u8 {
        self.data
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        // Sound: `bytes` readable bytes at `data`, inside the mapping this value owns.
        unsafe { std::slice::from_raw_parts(self.data, self.bytes) }
    }

    /// The bytes, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // Sound: as in `bytes`, and `&mut self` makes the view exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.data, self.bytes) }
    }

    /// A view for a kernel: tensor `name` of `dtype` and `shape`, writable for an output.
    pub fn tensor<'a>(&'a self, name: &'a str, dtype: DType, shape: &'a [usize], writable: bool) -> TensorRef<'a> {
        TensorRef { name, dtype, shape, data: self.data, bytes: self.bytes, writable }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // Sound: the mapping this value made, unmapped once.
        unsafe { libc::munmap(self.base.cast(), self.map_len) };
    }
}

/// f32 values as bytes.
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

/// bf16 bit patterns as bytes.
pub fn u16_bytes(v: &[u16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

/// Bytes as f32 values.
pub fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// The environment variable that makes a test binary run one deliberate overrun.
pub const CHILD: &str = "SSMC_GUARD_CHILD";

/// Re-runs this test binary on the single ignored test `test` with `CHILD=what`; returns
/// the signal that ended it, if one did, and what it wrote on stdout.
pub fn run_child(test: &str, what: &str) -> (Option<i32>, String) {
    use std::os::unix::process::ExitStatusExt;
    let exe = std::env::current_exe().expect("test executable");
    let out = std::process::Command::new(exe)
        .args([test, "--exact", "--ignored", "--nocapture", "--test-threads", "1"])
        .env(CHILD, what)
        .output()
        .expect("re-run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.signal().is_none() {
        eprintln!("child {what} ended with {}:\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    (out.status.signal(), stdout)
}
