//! The few PKCS#11 calls cryptoki 0.12 does not wrap (`C_CloseAllSessions`, anything with
//! `CKM_AES_KEY_WRAP_KWP`, a mechanism it cannot name, and single-part operations into a buffer
//! the caller sizes: one call where cryptoki makes two), made through the module's function list.
//! Only `C_GetFunctionList` is looked up by name: PKCS#11 3.0 modules such as Kryoptic export
//! nothing else.

use cryptoki_sys::{
    CK_ATTRIBUTE, CK_BYTE, CK_FUNCTION_LIST, CK_MECHANISM, CK_MECHANISM_INFO, CK_MECHANISM_TYPE,
    CK_OBJECT_HANDLE, CK_RV, CK_SESSION_HANDLE, CK_SLOT_ID, CK_ULONG,
};

/// The single-part calls finished in one call into a buffer the caller sizes.
#[derive(Clone, Copy)]
pub(super) enum SinglePart {
    Encrypt,
    Decrypt,
    Sign,
}

impl SinglePart {
    pub(super) fn function(self) -> cryptoki::context::Function {
        match self {
            SinglePart::Encrypt => cryptoki::context::Function::Encrypt,
            SinglePart::Decrypt => cryptoki::context::Function::Decrypt,
            SinglePart::Sign => cryptoki::context::Function::Sign,
        }
    }
}

/// `CKR_FUNCTION_NOT_SUPPORTED`, for a function the module's list leaves empty.
const NOT_SUPPORTED: CK_RV = cryptoki_sys::CKR_FUNCTION_NOT_SUPPORTED;

pub(super) struct RawModule {
    /// Keeps the library loaded while `list` points into it.
    _lib: cryptoki_sys::Pkcs11,
    list: *const CK_FUNCTION_LIST,
}

// SAFETY: the function list is immutable after C_GetFunctionList and the module is
// initialised with OS locking, so its functions may be called from any thread.
unsafe impl Send for RawModule {}
unsafe impl Sync for RawModule {}

impl RawModule {
    /// Load `module` (already loaded by cryptoki: the loader hands back the same library) and
    /// get its function list.
    pub(super) fn load(module: &str) -> Option<RawModule> {
        // SAFETY: loading a PKCS#11 module cryptoki has already loaded and initialised.
        let lib = unsafe { cryptoki_sys::Pkcs11::new(module) }.ok()?;
        let get = *lib.C_GetFunctionList.as_ref().ok()?;
        let mut list: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
        // SAFETY: C_GetFunctionList writes one pointer.
        let rv = unsafe { get(&mut list) };
        (rv == cryptoki_sys::CKR_OK && !list.is_null()).then_some(RawModule { _lib: lib, list })
    }

    fn fns(&self) -> &CK_FUNCTION_LIST {
        // SAFETY: non-null, and valid while the library is loaded (`_lib`).
        unsafe { &*self.list }
    }

    pub(super) fn close_all_sessions(&self, slot: CK_SLOT_ID) -> CK_RV {
        match self.fns().C_CloseAllSessions {
            // SAFETY: a plain call with a slot id.
            Some(f) => unsafe { f(slot) },
            None => NOT_SUPPORTED,
        }
    }

    pub(super) fn mechanism_info(
        &self,
        slot: CK_SLOT_ID,
        mechanism: CK_MECHANISM_TYPE,
        info: &mut CK_MECHANISM_INFO,
    ) -> CK_RV {
        match self.fns().C_GetMechanismInfo {
            // SAFETY: `info` is a valid, exclusive struct for the call.
            Some(f) => unsafe { f(slot, mechanism, info) },
            None => NOT_SUPPORTED,
        }
    }

    /// # Safety
    /// The session must be live with `op`'s operation initialised; `*len` must be at most
    /// `out`'s length.
    pub(super) unsafe fn single_part(
        &self,
        op: SinglePart,
        session: CK_SESSION_HANDLE,
        data: &[u8],
        out: &mut [u8],
        len: &mut CK_ULONG,
    ) -> CK_RV {
        let f = match op {
            SinglePart::Encrypt => self.fns().C_Encrypt,
            SinglePart::Decrypt => self.fns().C_Decrypt,
            SinglePart::Sign => self.fns().C_Sign,
        };
        match f {
            // The input pointer is declared mutable in PKCS#11's C prototypes; it is only read.
            Some(f) => f(
                session,
                data.as_ptr() as *mut CK_BYTE,
                data.len() as CK_ULONG,
                out.as_mut_ptr(),
                len,
            ),
            None => NOT_SUPPORTED,
        }
    }

    /// # Safety
    /// The handles must be live; `out` must hold `*len` bytes or be null (a length query).
    pub(super) unsafe fn wrap_key(
        &self,
        session: CK_SESSION_HANDLE,
        mechanism: &mut CK_MECHANISM,
        wrapping: CK_OBJECT_HANDLE,
        key: CK_OBJECT_HANDLE,
        out: *mut CK_BYTE,
        len: &mut CK_ULONG,
    ) -> CK_RV {
        match self.fns().C_WrapKey {
            Some(f) => f(session, mechanism, wrapping, key, out, len),
            None => NOT_SUPPORTED,
        }
    }

    /// # Safety
    /// The handles must be live; `template` must point at `count` valid attributes.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn unwrap_key(
        &self,
        session: CK_SESSION_HANDLE,
        mechanism: &mut CK_MECHANISM,
        unwrapping: CK_OBJECT_HANDLE,
        blob: &mut [u8],
        template: *mut CK_ATTRIBUTE,
        count: CK_ULONG,
        key: &mut CK_OBJECT_HANDLE,
    ) -> CK_RV {
        match self.fns().C_UnwrapKey {
            Some(f) => f(
                session,
                mechanism,
                unwrapping,
                blob.as_mut_ptr(),
                blob.len() as CK_ULONG,
                template,
                count,
                key,
            ),
            None => NOT_SUPPORTED,
        }
    }
}
