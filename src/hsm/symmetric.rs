//! Symmetric crypto with keys the service unwrapped: AES-GCM encryption and decryption (as
//! PKCS#11 3.0 messages where the token has them: `messages.rs`), and random bytes from the
//! token. Separate from wrapping: these are the hot-path calls on a pooled session.

use super::raw::Direction;
use super::*;

impl Hsm {
    /// AES-256-GCM encryption in the token with a 96-bit IV and a 128-bit tag; returns
    /// ciphertext || tag.
    pub async fn gcm_encrypt(
        &self,
        key: Arc<KeyHandle>,
        iv: [u8; 12],
        aad: Vec<u8>,
        plaintext: Zeroizing<Vec<u8>>,
    ) -> Result<Vec<u8>, HsmError> {
        let prefer = self.prefer(Direction::Encrypt, &key);
        self.run_fast_on(prefer, move |s| {
            if let Some(r) = s.gcm_message(Direction::Encrypt, &key, iv, &aad, &plaintext) {
                return r.map(|mut out| std::mem::take(&mut *out));
            }
            crate::metrics::token_gcm("two_calls");
            let mut iv = iv;
            let params = ck(GcmParams::new(&mut iv, &aad, 128.into()))?;
            // The output is the ciphertext and its 16-byte tag.
            s.encrypt_once(
                &Mechanism::AesGcm(params),
                s.obj(&key)?,
                &plaintext,
                plaintext.len() + 16,
            )
        })
        .await
    }

    /// AES-256-GCM decryption in the token; the tag is checked by the token.
    pub async fn gcm_decrypt(
        &self,
        key: Arc<KeyHandle>,
        iv: [u8; 12],
        aad: Vec<u8>,
        ciphertext: Vec<u8>,
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        let prefer = self.prefer(Direction::Decrypt, &key);
        self.run_fast_on(prefer, move |s| {
            if let Some(r) = s.gcm_message(Direction::Decrypt, &key, iv, &aad, &ciphertext) {
                return s.bad_ciphertext(r);
            }
            crate::metrics::token_gcm("two_calls");
            let mut iv = iv;
            let params = ck(GcmParams::new(&mut iv, &aad, 128.into()))?;
            s.bad_ciphertext(s.decrypt_once(&Mechanism::AesGcm(params), s.obj(&key)?, &ciphertext))
        })
        .await
    }

    /// `n` bytes from the token's RNG.
    pub async fn random(&self, n: usize) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        self.run_fast(move |s| {
            let mut buf = Zeroizing::new(vec![0u8; n]);
            ck(s.generate_random_slice(&mut buf))?;
            Ok(buf)
        })
        .await
    }
}
