//! The few PKCS#11 calls cryptoki 0.12 does not wrap (`C_CloseAllSessions`, anything with
//! `CKM_AES_KEY_WRAP_KWP`, a mechanism it cannot name, and single-part operations into a buffer
//! the caller sizes: one call where cryptoki makes two), made through the module's function list.
//! Only `C_GetFunctionList` and `C_GetInterface` are looked up by name: PKCS#11 3.0 modules such
//! as Kryoptic export nothing else. A module whose default interface is PKCS#11 3.0 also gives
//! the message-based AES-GCM calls (`C_EncryptMessage`, `C_DecryptMessage`): one call a message
//! on a session set up once for its key.

use cryptoki_sys::{
    CK_ATTRIBUTE, CK_BYTE, CK_FUNCTION_LIST, CK_FUNCTION_LIST_3_0, CK_GCM_MESSAGE_PARAMS,
    CK_INTERFACE, CK_MECHANISM, CK_MECHANISM_INFO, CK_MECHANISM_TYPE, CK_OBJECT_HANDLE, CK_RV,
    CK_SESSION_HANDLE, CK_SLOT_ID, CK_ULONG,
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
    /// The module's PKCS#11 3.0 function list, where its default interface is one.
    list3: Option<*const CK_FUNCTION_LIST_3_0>,
}

/// Which message-based operation: AES-GCM encryption or decryption.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Direction {
    Encrypt,
    Decrypt,
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
        if rv != cryptoki_sys::CKR_OK || list.is_null() {
            return None;
        }
        let list3 = interface_3_0(&lib);
        Some(RawModule {
            _lib: lib,
            list,
            list3,
        })
    }

    /// Whether the module has the PKCS#11 3.0 calls (its default interface is 3.0 or later).
    pub(super) fn has_messages(&self) -> bool {
        self.fns3().is_some_and(|f| {
            f.C_MessageEncryptInit.is_some()
                && f.C_EncryptMessage.is_some()
                && f.C_MessageEncryptFinal.is_some()
                && f.C_MessageDecryptInit.is_some()
                && f.C_DecryptMessage.is_some()
                && f.C_MessageDecryptFinal.is_some()
        })
    }

    fn fns3(&self) -> Option<&CK_FUNCTION_LIST_3_0> {
        // SAFETY: non-null, and valid while the library is loaded (`_lib`).
        self.list3.map(|l| unsafe { &*l })
    }

    /// `C_MessageEncryptInit` or `C_MessageDecryptInit` with AES-GCM (its parameters come
    /// with each message) and `key`.
    ///
    /// # Safety
    /// The session and the key must be live.
    pub(super) unsafe fn message_init(
        &self,
        direction: Direction,
        session: CK_SESSION_HANDLE,
        key: CK_OBJECT_HANDLE,
    ) -> CK_RV {
        let mut mechanism = CK_MECHANISM {
            mechanism: cryptoki_sys::CKM_AES_GCM,
            pParameter: std::ptr::null_mut(),
            ulParameterLen: 0,
        };
        let f = self.fns3().and_then(|f| match direction {
            Direction::Encrypt => f.C_MessageEncryptInit,
            Direction::Decrypt => f.C_MessageDecryptInit,
        });
        match f {
            Some(f) => f(session, &mut mechanism, key),
            None => NOT_SUPPORTED,
        }
    }

    /// `C_MessageEncryptFinal` or `C_MessageDecryptFinal`: the session's message-based
    /// operation ends (and with it the token's copy of the key's schedule).
    ///
    /// # Safety
    /// The session must be live.
    pub(super) unsafe fn message_final(
        &self,
        direction: Direction,
        session: CK_SESSION_HANDLE,
    ) -> CK_RV {
        let f = self.fns3().and_then(|f| match direction {
            Direction::Encrypt => f.C_MessageEncryptFinal,
            Direction::Decrypt => f.C_MessageDecryptFinal,
        });
        match f {
            Some(f) => f(session),
            None => NOT_SUPPORTED,
        }
    }

    /// One AES-GCM message on a session whose message-based operation of `direction` is
    /// initialised: `C_EncryptMessage` (the tag is written to `params.pTag`) or
    /// `C_DecryptMessage` (the tag is read from it).
    ///
    /// # Safety
    /// The session must be live with the operation initialised; `params` must point at an IV
    /// of `ulIvLen` bytes and a tag of `ulTagBits` bits; `*len` must be at most `out`'s length.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn gcm_message(
        &self,
        direction: Direction,
        session: CK_SESSION_HANDLE,
        params: &mut CK_GCM_MESSAGE_PARAMS,
        aad: &[u8],
        data: &[u8],
        out: &mut [u8],
        len: &mut CK_ULONG,
    ) -> CK_RV {
        let f = self.fns3().and_then(|f| match direction {
            Direction::Encrypt => f.C_EncryptMessage,
            Direction::Decrypt => f.C_DecryptMessage,
        });
        match f {
            // Input pointers are declared mutable in PKCS#11's C prototypes; they are only read.
            Some(f) => f(
                session,
                params as *mut CK_GCM_MESSAGE_PARAMS as *mut std::ffi::c_void,
                std::mem::size_of::<CK_GCM_MESSAGE_PARAMS>() as CK_ULONG,
                aad.as_ptr() as *mut CK_BYTE,
                aad.len() as CK_ULONG,
                data.as_ptr() as *mut CK_BYTE,
                data.len() as CK_ULONG,
                out.as_mut_ptr(),
                len,
            ),
            None => NOT_SUPPORTED,
        }
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

/// The module's default interface, if it is PKCS#11 3.0 or later (`C_GetInterface`).
fn interface_3_0(lib: &cryptoki_sys::Pkcs11) -> Option<*const CK_FUNCTION_LIST_3_0> {
    let get = *lib.C_GetInterface.as_ref().ok()?;
    let mut iface: *mut CK_INTERFACE = std::ptr::null_mut();
    // SAFETY: with no name and no version the module writes one pointer to its default
    // interface, which lives as long as the library.
    let rv = unsafe { get(std::ptr::null_mut(), std::ptr::null_mut(), &mut iface, 0) };
    if rv != cryptoki_sys::CKR_OK || iface.is_null() {
        return None;
    }
    // SAFETY: as above; every function list starts with its version.
    let list = unsafe { (*iface).pFunctionList } as *const CK_FUNCTION_LIST_3_0;
    if list.is_null() || unsafe { (*list).version.major } < 3 {
        return None;
    }
    Some(list)
}
