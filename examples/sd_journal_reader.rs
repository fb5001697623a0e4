//! The other way `ccscope audit` could read the journal, for `scripts/bench-audit.sh` to
//! measure against `journalctl -o json`: libsystemd's own reader (sd-journal), loaded at run
//! time with dlopen (no build-time dependency, no parser of journal files of our own). It
//! prints each entry of `CCSCOPE_PROJECT=<project>` as one JSON object of its fields, as
//! `ccscope audit --json` prints what journalctl gave it.
//!
//! Usage: `cargo run --release --example sd_journal_reader -- PROJECT`

use std::ffi::{CString, c_int, c_void};
use std::io::Write;

type Open = unsafe extern "C" fn(*mut *mut c_void, c_int) -> c_int;
type AddMatch = unsafe extern "C" fn(*mut c_void, *const c_void, usize) -> c_int;
type Next = unsafe extern "C" fn(*mut c_void) -> c_int;
type EnumerateData = unsafe extern "C" fn(*mut c_void, *mut *const c_void, *mut usize) -> c_int;
type Restart = unsafe extern "C" fn(*mut c_void);
type Realtime = unsafe extern "C" fn(*mut c_void, *mut u64) -> c_int;

/// A symbol of libsystemd, as the function type `T`.
///
/// # Safety
/// `T` must be the symbol's C signature.
unsafe fn symbol<T: Copy>(lib: *mut c_void, name: &str) -> T {
    let cname = CString::new(name).unwrap();
    // SAFETY: dlsym on a handle dlopen returned; the caller gives the right type.
    let f = unsafe { libc::dlsym(lib, cname.as_ptr()) };
    assert!(!f.is_null(), "libsystemd has no {name}");
    // SAFETY: a function pointer is pointer-sized; the caller gives its C signature.
    unsafe { std::mem::transmute_copy(&f) }
}

fn main() {
    let project = std::env::args()
        .nth(1)
        .expect("usage: sd_journal_reader PROJECT");
    let lib_name = CString::new("libsystemd.so.0").unwrap();
    // SAFETY: dlopen of the system's libsystemd; every symbol below has its documented C
    // signature (sd-journal(3)).
    unsafe {
        let lib = libc::dlopen(lib_name.as_ptr(), libc::RTLD_NOW);
        assert!(!lib.is_null(), "libsystemd.so.0 cannot be loaded");
        let open: Open = symbol(lib, "sd_journal_open");
        let add_match: AddMatch = symbol(lib, "sd_journal_add_match");
        let next: Next = symbol(lib, "sd_journal_next");
        let restart: Restart = symbol(lib, "sd_journal_restart_data");
        let enumerate: EnumerateData = symbol(lib, "sd_journal_enumerate_data");
        let realtime: Realtime = symbol(lib, "sd_journal_get_realtime_usec");
        let mut j: *mut c_void = std::ptr::null_mut();
        assert!(open(&mut j, 0) >= 0, "sd_journal_open failed");
        let m = format!("CCSCOPE_PROJECT={project}");
        assert!(add_match(j, m.as_ptr().cast(), m.len()) >= 0);
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
        while next(j) > 0 {
            let mut object = serde_json::Map::new();
            let mut usec = 0u64;
            if realtime(j, &mut usec) >= 0 {
                object.insert("__REALTIME_TIMESTAMP".into(), usec.to_string().into());
            }
            restart(j);
            let (mut data, mut len) = (std::ptr::null(), 0usize);
            while enumerate(j, &mut data, &mut len) > 0 {
                let field = std::slice::from_raw_parts(data.cast::<u8>(), len);
                let Some(eq) = field.iter().position(|b| *b == b'=') else {
                    continue;
                };
                let name = String::from_utf8_lossy(&field[..eq]).into_owned();
                let value = String::from_utf8_lossy(&field[eq + 1..]).into_owned();
                object.insert(name, value.into());
            }
            serde_json::to_writer(&mut out, &object).unwrap();
            out.write_all(b"\n").unwrap();
        }
        out.flush().unwrap();
    }
}
