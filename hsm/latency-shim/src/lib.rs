//! A PKCS#11 module for benchmarks: every call is forwarded to the module named by
//! `LATENCY_SHIM_MODULE` after sleeping `LATENCY_SHIM_DELAY_US` microseconds on the calling thread,
//! as a call to a token across a network blocks its caller for one round trip. Calls on
//! different threads wait side by side, as a network appliance's sessions do.
//!
//! With `LATENCY_SHIM_GENERATE_KEY_PAIR_FILE=<file>`, `C_GenerateKeyPair` also waits the number
//! of milliseconds the file holds when it is called (none while the file is absent): a token
//! whose key pair generation is slow, as an HSM's RSA-4096 can be. The tests use it.
//!
//! A module whose default interface is PKCS#11 3.0 (Kryoptic) is offered as one: the shim's
//! `C_GetInterface` hands out a 3.0 function list with the functions 3.0 added delayed too.
//!
//! Why a shim and not p11-kit: Debian 12's p11-kit 0.24.1 cannot carry the mechanism
//! parameters the service needs (its RPC lists no AES-GCM and no AES key wrap), and the
//! kernel of the benchmark machines has no `netem` qdisc. See docs/benchmarks.md.
#![allow(non_snake_case, clippy::missing_safety_doc)]

use cryptoki_sys::*;
use std::ffi::c_void;
use std::sync::OnceLock;
use std::time::Duration;

struct Real {
    list: &'static CK_FUNCTION_LIST,
    /// The real module's PKCS#11 3.0 function list, where its default interface is one.
    list3: Option<&'static CK_FUNCTION_LIST_3_0>,
    delay: Duration,
    _lib: libloading::Library,
}

static REAL: OnceLock<Result<Real, String>> = OnceLock::new();
static LIST: OnceLock<CK_FUNCTION_LIST> = OnceLock::new();
static LIST3: OnceLock<CK_FUNCTION_LIST_3_0> = OnceLock::new();
/// `C_GetInterface`'s answer: the interface's name, its function list and flags.
struct Interface(CK_INTERFACE);
// SAFETY: it points only at static data, never written after it is made.
unsafe impl Send for Interface {}
unsafe impl Sync for Interface {}
static INTERFACE: OnceLock<Interface> = OnceLock::new();
/// The name of PKCS#11's standard interface.
static PKCS11_NAME: &[u8; 8] = b"PKCS 11\0";

fn load() -> Result<Real, String> {
    let path =
        std::env::var("LATENCY_SHIM_MODULE").map_err(|_| "LATENCY_SHIM_MODULE is not set")?;
    let delay_us: u64 = std::env::var("LATENCY_SHIM_DELAY_US")
        .unwrap_or_else(|_| "1000".into())
        .parse()
        .map_err(|e| format!("LATENCY_SHIM_DELAY_US: {e}"))?;
    unsafe {
        let lib = libloading::Library::new(&path).map_err(|e| format!("{path}: {e}"))?;
        let get: libloading::Symbol<unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV> =
            lib.get(b"C_GetFunctionList").map_err(|e| e.to_string())?;
        let mut list: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
        let rv = get(&mut list);
        if rv != CKR_OK || list.is_null() {
            return Err(format!("C_GetFunctionList of {path}: {rv:#x}"));
        }
        let list3 = match lib.get::<unsafe extern "C" fn(
            *mut CK_UTF8CHAR,
            *mut CK_VERSION,
            *mut *mut CK_INTERFACE,
            CK_FLAGS,
        ) -> CK_RV>(b"C_GetInterface")
        {
            Ok(get) => {
                let mut iface: *mut CK_INTERFACE = std::ptr::null_mut();
                let rv = get(std::ptr::null_mut(), std::ptr::null_mut(), &mut iface, 0);
                let l = if rv == CKR_OK && !iface.is_null() {
                    (*iface).pFunctionList as *const CK_FUNCTION_LIST_3_0
                } else {
                    std::ptr::null()
                };
                (!l.is_null() && (*l).version.major >= 3).then(|| &*l)
            }
            Err(_) => None,
        };
        Ok(Real {
            list: &*list,
            list3,
            delay: Duration::from_micros(delay_us),
            _lib: lib,
        })
    }
}

fn real() -> &'static Real {
    match REAL.get_or_init(load) {
        Ok(r) => r,
        Err(e) => panic!("kms-latency-shim: {e}"),
    }
}

/// With `LATENCY_SHIM_COUNTS=<file>`: every second, each function's number of calls so far.
fn count(name: &'static str) {
    static COUNTS: OnceLock<
        Option<std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>>,
    > = OnceLock::new();
    let Some(m) = COUNTS.get_or_init(|| {
        let path = std::env::var("LATENCY_SHIM_COUNTS").ok()?;
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            if let Some(Some(m)) = COUNTS.get() {
                let text: String = m
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| format!("{k} {v}\n"))
                    .collect();
                let _ = std::fs::write(&path, text);
            }
        });
        Some(std::sync::Mutex::new(Default::default()))
    }) else {
        return;
    };
    *m.lock().unwrap().entry(name).or_default() += 1;
}

/// What `LATENCY_SHIM_GENERATE_KEY_PAIR_FILE` holds now, in milliseconds (none: zero).
fn generation_delay() -> Duration {
    let ms = std::env::var("LATENCY_SHIM_GENERATE_KEY_PAIR_FILE")
        .ok()
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    Duration::from_millis(ms)
}

/// Each function: count it, sleep one round trip, then call the real module's (from `$list`, a
/// function giving the real module's list that has it, if it has one).
macro_rules! forward {
    ($list:ident; $($name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            unsafe extern "C" fn $name($($arg: $ty),*) -> CK_RV {
                let r = real();
                count(stringify!($name));
                std::thread::sleep(r.delay);
                if stringify!($name) == "C_GenerateKeyPair" {
                    std::thread::sleep(generation_delay());
                }
                match $list(r).and_then(|l| l.$name) {
                    Some(f) => f($($arg),*),
                    None => CKR_FUNCTION_NOT_SUPPORTED,
                }
            }
        )*
    };
}

fn list_240(r: &Real) -> Option<&CK_FUNCTION_LIST> {
    Some(r.list)
}

fn list_30(r: &Real) -> Option<&CK_FUNCTION_LIST_3_0> {
    r.list3
}

/// The 2.40 functions, and the 2.40 list of them.
macro_rules! wrap {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {
        forward!(list_240; $($name($($arg: $ty),*);)*);
        fn our_list(version: CK_VERSION) -> CK_FUNCTION_LIST {
            CK_FUNCTION_LIST {
                version,
                C_GetFunctionList: Some(C_GetFunctionList),
                $($name: Some($name),)*
            }
        }
    };
}

/// The functions PKCS#11 3.0 added (`our_list3` in `wrappers3.rs` lists them with the rest).
macro_rules! wrap3 {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {
        forward!(list_30; $($name($($arg: $ty),*);)*);
    };
}

include!("wrappers.rs");
include!("wrappers3.rs");

/// The module's one export: the real module's function list, each function delayed.
#[no_mangle]
pub unsafe extern "C" fn C_GetFunctionList(pp: *mut *mut CK_FUNCTION_LIST) -> CK_RV {
    if pp.is_null() {
        return CKR_ARGUMENTS_BAD;
    }
    let Ok(r) = REAL.get_or_init(load) else {
        return CKR_GENERAL_ERROR;
    };
    // Callers only read the list (PKCS#11 declares it theirs to read, not to write).
    *pp = LIST.get_or_init(|| our_list(r.list.version)) as *const _ as *mut CK_FUNCTION_LIST;
    CKR_OK
}

/// The module's default interface: PKCS#11 3.0 where the real module's is (each function
/// delayed, the 3.0 ones too), else its 2.40 list.
#[no_mangle]
pub unsafe extern "C" fn C_GetInterface(
    name: *mut CK_UTF8CHAR,
    _version: *mut CK_VERSION,
    pp: *mut *mut CK_INTERFACE,
    _flags: CK_FLAGS,
) -> CK_RV {
    if pp.is_null() {
        return CKR_ARGUMENTS_BAD;
    }
    if !name.is_null()
        && std::ffi::CStr::from_ptr(name as *const std::ffi::c_char).to_bytes() != b"PKCS 11"
    {
        return CKR_ARGUMENTS_BAD;
    }
    let Ok(r) = REAL.get_or_init(load) else {
        return CKR_GENERAL_ERROR;
    };
    let list: *mut c_void = match r.list3 {
        // Our list is a 3.0 list whatever the real module's minor version (Kryoptic's is 3.2):
        // a caller reads as much of it as its version says.
        Some(_) => LIST3.get_or_init(|| our_list3(CK_VERSION { major: 3, minor: 0 })) as *const _
            as *mut c_void,
        None => LIST.get_or_init(|| our_list(r.list.version)) as *const _ as *mut c_void,
    };
    let iface = INTERFACE.get_or_init(|| {
        Interface(CK_INTERFACE {
            pInterfaceName: PKCS11_NAME.as_ptr() as *mut CK_UTF8CHAR,
            pFunctionList: list,
            flags: 0,
        })
    });
    *pp = &iface.0 as *const CK_INTERFACE as *mut CK_INTERFACE;
    CKR_OK
}
