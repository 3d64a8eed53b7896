//! RSAES-OAEP decoding (RFC 8017 §7.1.2) in the service, for tokens whose RSA-OAEP has no
//! SHA-256 (SoftHSM 2.6.1 has SHA-1 only). The RSA private-key operation stays in the token
//! (`CKM_RSA_X_509`, raw RSA); only the encoded message comes out, and this module removes its
//! padding.
//!
//! It is written against Manger's attack and its kin: every check runs over the whole encoded
//! message whatever its content, with no branch and no index that depends on it, and every
//! failure is the same `None`. The one branch is the last one, on whether the whole block
//! decoded, which the caller's answer (a plaintext or `InvalidCiphertextException`) reveals
//! anyway. Modelled on BoringSSL's `RSA_padding_check_PKCS1_OAEP_mgf1`.

use super::Hash;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroizing;

fn digest_algorithm(h: Hash) -> &'static aws_lc_rs::digest::Algorithm {
    use aws_lc_rs::digest;
    match h {
        Hash::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        Hash::Sha224 => &digest::SHA224,
        Hash::Sha256 => &digest::SHA256,
        Hash::Sha384 => &digest::SHA384,
        Hash::Sha512 => &digest::SHA512,
    }
}

/// MGF1 (RFC 8017 B.2.1) of `seed`, XORed into `out`.
fn mgf1_xor(h: Hash, seed: &[u8], out: &mut [u8]) {
    let alg = digest_algorithm(h);
    for (counter, chunk) in out.chunks_mut(h.output_len()).enumerate() {
        let mut ctx = aws_lc_rs::digest::Context::new(alg);
        ctx.update(seed);
        ctx.update(&(counter as u32).to_be_bytes());
        let mask = ctx.finish();
        for (o, m) in chunk.iter_mut().zip(mask.as_ref()) {
            *o ^= m;
        }
    }
}

/// The message of an OAEP-encoded block `em` (the raw RSA output, as long as the modulus), with
/// MGF1 over the same hash and an empty label; `None` for any block that does not decode.
pub(super) fn decode(h: Hash, em: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let h_len = h.output_len();
    let k = em.len();
    // Public: the modulus length.
    if k < 2 * h_len + 2 {
        return None;
    }
    let mut block = Zeroizing::new(em.to_vec());
    let (y, rest) = block.split_at_mut(1);
    let (seed, db) = rest.split_at_mut(h_len);
    mgf1_xor(h, db, seed);
    mgf1_xor(h, seed, db);
    let label_hash = aws_lc_rs::digest::digest(digest_algorithm(h), b"");
    let mut good = y[0].ct_eq(&0) & db[..h_len].ct_eq(label_hash.as_ref());
    // DB = lHash ‖ PS (zero bytes) ‖ 0x01 ‖ M: find the 0x01 without revealing where it is.
    let mut looking = Choice::from(1);
    let mut invalid = Choice::from(0);
    let mut one_at = 0u64;
    for (i, b) in db.iter().enumerate().skip(h_len) {
        let is_one = b.ct_eq(&1);
        let is_zero = b.ct_eq(&0);
        one_at.conditional_assign(&(i as u64), looking & is_one);
        looking &= !is_one;
        invalid |= looking & !is_zero;
    }
    good &= !invalid & !looking;
    if !bool::from(good) {
        return None;
    }
    Some(Zeroizing::new(db[one_at as usize + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8017 §7.1.1 EME-OAEP encoding with a given seed, for building blocks to decode.
    fn encode(h: Hash, k: usize, message: &[u8], seed: &[u8]) -> Vec<u8> {
        let h_len = h.output_len();
        let mut db = aws_lc_rs::digest::digest(digest_algorithm(h), b"")
            .as_ref()
            .to_vec();
        db.resize(k - message.len() - h_len - 2, 0);
        db.push(1);
        db.extend_from_slice(message);
        let mut seed = seed.to_vec();
        mgf1_xor(h, &seed, &mut db);
        mgf1_xor(h, &db, &mut seed);
        let mut em = vec![0u8];
        em.extend_from_slice(&seed);
        em.extend_from_slice(&db);
        em
    }

    /// Undo the masking of `em` so that the DB can be edited, and redo it.
    fn edit_db(h: Hash, em: &[u8], edit: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
        let h_len = h.output_len();
        let mut seed = em[1..=h_len].to_vec();
        let mut db = em[1 + h_len..].to_vec();
        mgf1_xor(h, &db, &mut seed);
        mgf1_xor(h, &seed, &mut db);
        edit(&mut db);
        mgf1_xor(h, &seed, &mut db);
        mgf1_xor(h, &db, &mut seed);
        let mut out = vec![em[0]];
        out.extend_from_slice(&seed);
        out.extend_from_slice(&db);
        out
    }

    /// Blocks encoded as RFC 8017 says decode to their message, for every message length the
    /// modulus allows (interoperability with real encoders: the Wycheproof vectors, decrypted
    /// through a token in `tests/api/asymmetric.rs`).
    #[test]
    fn encoded_blocks_decode_to_their_message() {
        for h in [Hash::Sha1, Hash::Sha256, Hash::Sha512] {
            for len in [0usize, 1, 32, 256 - 2 * h.output_len() - 2] {
                let message: Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5a).collect();
                let em = encode(h, 256, &message, &vec![0x33; h.output_len()]);
                assert_eq!(decode(h, &em).as_deref(), Some(&message), "{h:?} {len}");
            }
        }
    }

    #[test]
    fn every_malformed_block_is_refused_alike() {
        let h = Hash::Sha256;
        let em = encode(h, 256, b"secret", &[7u8; 32]);
        assert!(decode(h, &em).is_some());
        let mut bad = Vec::new();
        // Leading byte not zero.
        let mut e = em.clone();
        e[0] = 1;
        bad.push(e);
        // Label hash wrong (each end of it).
        bad.push(edit_db(h, &em, |db| db[0] ^= 1));
        bad.push(edit_db(h, &em, |db| db[31] ^= 0x80));
        // A non-zero byte in the padding string.
        bad.push(edit_db(h, &em, |db| db[40] = 2));
        // No 0x01 separator at all.
        bad.push(edit_db(h, &em, |db| {
            for b in db.iter_mut().skip(32) {
                *b = 0;
            }
        }));
        // The separator replaced by another value.
        bad.push(edit_db(h, &em, |db| {
            let i = db.len() - 7;
            db[i] = 0x02;
        }));
        // Decoded under the wrong hash.
        assert!(decode(Hash::Sha1, &em).is_none());
        // Too short for the hash.
        assert!(decode(h, &em[..2 * 32 + 1]).is_none());
        for (i, e) in bad.iter().enumerate() {
            assert!(decode(h, e).is_none(), "case {i}");
        }
    }

    /// The decoder takes as long for a block that fails early (leading byte) or late (the
    /// separator) as for one that decodes: the fastest of many rounds of each, measured
    /// interleaved, are within a quarter of each other. An early return would make the
    /// failures several times faster (no MGF1, no scan).
    #[test]
    fn decoding_time_does_not_depend_on_the_padding() {
        let h = Hash::Sha256;
        let good = encode(h, 512, &[9u8; 100], &[1u8; 32]);
        let mut first_byte = good.clone();
        first_byte[0] = 0x80;
        let no_separator = edit_db(h, &good, |db| {
            for b in db.iter_mut().skip(32) {
                *b = 0;
            }
        });
        let wrong_label = edit_db(h, &good, |db| db[0] ^= 1);
        let cases = [&good, &first_byte, &no_separator, &wrong_label];
        let mut best = [u128::MAX; 4];
        for _ in 0..60 {
            for (i, em) in cases.iter().enumerate() {
                let t = std::time::Instant::now();
                for _ in 0..200 {
                    std::hint::black_box(decode(h, std::hint::black_box(em)));
                }
                best[i] = best[i].min(t.elapsed().as_nanos());
            }
        }
        let fastest = *best.iter().min().unwrap() as f64;
        let slowest = *best.iter().max().unwrap() as f64;
        assert!(
            slowest / fastest < 1.25,
            "valid, bad first byte, no separator, bad label: {best:?} ns"
        );
    }
}
