//! Wrapping: RFC 5649 under the root key (`CKM_AES_KEY_WRAP_PAD`, or `KWP` through the raw
//! function list where cryptoki cannot name it), generating customer keys only to wrap and
//! destroy them, unwrapping blobs into session objects owned by a [`KeyHandle`], and
//! re-wrapping under a newer root key. Separate because it is the one place key material
//! crosses the token's boundary, and only ever wrapped.

use super::*;

/// RFC 5649 (AES key wrap with padding), as the token names it. Every wrapped blob the service
/// stores, and the second step of `RSA_AES_KEY_WRAP_*` imports, use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rfc5649 {
    /// `CKM_AES_KEY_WRAP_PAD` (0x210A), which SoftHSM2 implements as RFC 5649.
    Pad,
    /// `CKM_AES_KEY_WRAP_KWP` (0x210B), RFC 5649 in PKCS#11 3.0 (Kryoptic, Luna, nShield).
    /// cryptoki 0.12 cannot name it, so it is called through the raw function list.
    Kwp,
}

/// What a wrapped blob holds, for re-wrapping it (the unwrap template must name the class).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    /// An AES-256 backing key.
    Aes,
    /// A generic secret: an HMAC key, an access key's signing secret.
    Secret,
    /// A private key (PKCS#8), with the one use it is unwrapped for.
    Private(asym::PairKind, asym::PrivateUse),
}

impl BlobKind {
    /// The template a blob of this kind is unwrapped with: extractable only to be wrapped again.
    fn template(self, extractable: bool) -> Vec<Attribute> {
        match self {
            BlobKind::Aes => secret_key(
                KeyType::AES,
                extractable,
                &[Attribute::Encrypt(true), Attribute::Decrypt(true)],
            ),
            BlobKind::Secret => secret_key(
                KeyType::GENERIC_SECRET,
                extractable,
                &[Attribute::Sign(true), Attribute::Verify(true)],
            ),
            BlobKind::Private(kind, use_) => asym::private_template(kind, use_, extractable),
        }
    }
}

/// `CKM_AES_KEY_WRAP_KWP` (PKCS#11 3.0).
pub(super) const CKM_AES_KEY_WRAP_KWP: cryptoki_sys::CK_MECHANISM_TYPE = 0x210B;

/// Wrap a session object under the root key and destroy it, on success and on failure alike.
/// The template of a secret key the service makes in a session: of `key_type`, never a token
/// object, private and sensitive, extractable only when it is to be wrapped, with `uses` (what
/// it may do, and any value or length).
pub(super) fn secret_key(
    key_type: KeyType,
    extractable: bool,
    uses: &[Attribute],
) -> Vec<Attribute> {
    let mut t = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(key_type),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(extractable),
    ];
    t.extend_from_slice(uses);
    t
}

pub(super) fn wrap_and_destroy(
    s: &Tok,
    root: ObjectHandle,
    key: ObjectHandle,
) -> Result<Vec<u8>, HsmError> {
    let wrapped = s.wrap5649(root, key);
    let destroyed = ck(s.destroy_object(key));
    let wrapped = wrapped?;
    destroyed?;
    Ok(wrapped)
}

fn raw_rv(rv: cryptoki_sys::CK_RV, function: cryptoki::context::Function) -> Result<(), HsmError> {
    ck(cryptoki::error::Rv::from(rv).into_result(function))
}

fn kwp_mechanism() -> cryptoki_sys::CK_MECHANISM {
    cryptoki_sys::CK_MECHANISM {
        mechanism: CKM_AES_KEY_WRAP_KWP,
        pParameter: std::ptr::null_mut(),
        ulParameterLen: 0,
    }
}

fn no_raw() -> HsmError {
    HsmError::Other(
        "the module's raw function list is not loaded (needed for CKM_AES_KEY_WRAP_KWP)".into(),
    )
}

/// RFC 5649 wrap with `mech`: cryptoki for `Pad`, the raw `C_WrapKey` for `Kwp`.
pub(super) fn wrap5649(
    s: &Session,
    mech: Rfc5649,
    raw: Option<&raw::RawModule>,
    wrapping: ObjectHandle,
    key: ObjectHandle,
) -> Result<Vec<u8>, HsmError> {
    use cryptoki::context::Function;
    match mech {
        Rfc5649::Pad => ck(s.wrap_key(&Mechanism::AesKeyWrapPad, wrapping, key)),
        Rfc5649::Kwp => {
            let raw = raw.ok_or_else(no_raw)?;
            let mut m = kwp_mechanism();
            let mut len: cryptoki_sys::CK_ULONG = 0;
            // PKCS#11's two calls: the length (a null buffer), then the bytes.
            let mut call = |buf: *mut u8, len: &mut cryptoki_sys::CK_ULONG| {
                // SAFETY: a live session and object handles; `m` and `len` outlive the call,
                // and `buf` is null or holds the `len` bytes the token asked for.
                raw_rv(
                    unsafe {
                        raw.wrap_key(
                            s.handle(),
                            &mut m,
                            wrapping.handle(),
                            key.handle(),
                            buf,
                            len,
                        )
                    },
                    Function::WrapKey,
                )
            };
            call(std::ptr::null_mut(), &mut len)?;
            let mut out = vec![0u8; len as usize];
            call(out.as_mut_ptr(), &mut len)?;
            out.truncate(len as usize);
            Ok(out)
        }
    }
}

/// RFC 5649 unwrap with `mech` into a new object made from `template`.
pub(super) fn unwrap5649(
    s: &Session,
    mech: Rfc5649,
    raw: Option<&raw::RawModule>,
    unwrapping: ObjectHandle,
    blob: &[u8],
    template: &[Attribute],
) -> Result<ObjectHandle, HsmError> {
    match mech {
        Rfc5649::Pad => ck(s.unwrap_key(&Mechanism::AesKeyWrapPad, unwrapping, blob, template)),
        Rfc5649::Kwp => {
            let raw = raw.ok_or_else(no_raw)?;
            let mut m = kwp_mechanism();
            // Each CK_ATTRIBUTE points into `template`, which outlives the call.
            let mut attrs: Vec<cryptoki_sys::CK_ATTRIBUTE> =
                template.iter().map(|a| a.into()).collect();
            let mut blob = blob.to_vec();
            let mut h: cryptoki_sys::CK_OBJECT_HANDLE = 0;
            // SAFETY: every pointer is to memory owned here for the duration of the call.
            raw_rv(
                unsafe {
                    raw.unwrap_key(
                        s.handle(),
                        &mut m,
                        unwrapping.handle(),
                        &mut blob,
                        attrs.as_mut_ptr(),
                        attrs.len() as cryptoki_sys::CK_ULONG,
                        &mut h,
                    )
                },
                cryptoki::context::Function::UnwrapKey,
            )?;
            // SAFETY: the token just returned this handle for a new object.
            Ok(unsafe { ObjectHandle::new_from_raw(h) })
        }
    }
}

impl Tok<'_> {
    /// RFC 5649 wrap of `key` under `wrapping`, with the token's mechanism for it.
    pub(super) fn wrap5649(
        &self,
        wrapping: ObjectHandle,
        key: ObjectHandle,
    ) -> Result<Vec<u8>, HsmError> {
        wrap5649(
            self.session,
            self.inner.caps.wrap,
            self.inner.raw.as_ref(),
            wrapping,
            key,
        )
    }

    /// RFC 5649 unwrap of `blob` under `unwrapping` into a new object made from `template`.
    pub(super) fn unwrap5649(
        &self,
        unwrapping: ObjectHandle,
        blob: &[u8],
        template: &[Attribute],
    ) -> Result<ObjectHandle, HsmError> {
        unwrap5649(
            self.session,
            self.inner.caps.wrap,
            self.inner.raw.as_ref(),
            unwrapping,
            blob,
            template,
        )
    }
}

impl Hsm {
    /// Generate a fresh AES-256 key in the token and return it wrapped under the root key,
    /// with the root key version that wrapped it. The cleartext key never leaves the token.
    pub async fn generate_wrapped_aes256(&self) -> Result<(Vec<u8>, u32), HsmError> {
        self.run(move |s| {
            let (version, root) = s.root()?;
            let key = ck(s.generate_key(
                &Mechanism::AesKeyGen,
                &secret_key(
                    KeyType::AES,
                    true,
                    &[
                        Attribute::Encrypt(true),
                        Attribute::Decrypt(true),
                        Attribute::ValueLen(32.into()),
                    ],
                ),
            ))?;
            Ok((wrap_and_destroy(s, root, key)?, version))
        })
        .await
    }

    /// Unwrap a blob of `kind` into a non-extractable session object for its use: encrypt
    /// and decrypt (AES), sign and verify (a generic secret), or the private key's one use.
    pub async fn unwrap_key(
        &self,
        blob: Vec<u8>,
        root_version: u32,
        kind: BlobKind,
    ) -> Result<Arc<KeyHandle>, HsmError> {
        self.unwrap(blob, root_version, kind.template(false)).await
    }

    pub(super) async fn unwrap(
        &self,
        blob: Vec<u8>,
        root_version: u32,
        template: Vec<Attribute>,
    ) -> Result<Arc<KeyHandle>, HsmError> {
        self.run_pinned(move |s| {
            let root = s.root_of(root_version)?;
            Ok(s.handle(s.unwrap5649(root, &blob, &template)?, true))
        })
        .await
    }

    /// Re-wrap a stored blob under the current root key: unwrapped under the root key of
    /// `from` (the version the blob records) into an extractable session object, wrapped under
    /// the current root, and destroyed, on every path. The key never leaves the token in
    /// plaintext. Returns the new blob and the current root version.
    pub async fn rewrap(
        &self,
        blob: Vec<u8>,
        from: u32,
        kind: BlobKind,
    ) -> Result<(Vec<u8>, u32), HsmError> {
        self.run(move |s| {
            let (version, root) = s.root()?;
            // Re-wrapped by another process since the row was listed: as it is.
            if from == version {
                return Ok((blob, version));
            }
            // A held key's stand-in is under no root key: it moves to the current one as it is.
            if super::held_id(&blob).is_some() {
                return Ok((blob, version));
            }
            let key = s.unwrap5649(s.root_of(from)?, &blob, &kind.template(true))?;
            Ok((wrap_and_destroy(s, root, key)?, version))
        })
        .await
    }

    /// Import a caller-supplied secret (an access key's signing secret) as a generic secret and
    /// return it wrapped under the root key. The session object is destroyed before returning.
    pub async fn wrap_hmac_secret(
        &self,
        secret: Zeroizing<Vec<u8>>,
    ) -> Result<(Vec<u8>, u32), HsmError> {
        self.run(move |s| {
            let (version, root) = s.root()?;
            let mut template = secret_key(
                KeyType::GENERIC_SECRET,
                true,
                &[
                    Attribute::Sign(true),
                    Attribute::Verify(true),
                    Attribute::Value(secret.to_vec()),
                ],
            );
            let created = ck(s.create_object(&template));
            for a in template.iter_mut() {
                if let Attribute::Value(v) = a {
                    zeroize::Zeroize::zeroize(v);
                }
            }
            let key = created?;
            Ok((wrap_and_destroy(s, root, key)?, version))
        })
        .await
    }
}
