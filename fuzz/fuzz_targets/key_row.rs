//! The wrapped-key row decoder: a real key's material row, altered the ways someone with write
//! access to the database could alter it (blob, MAC, version, root version, key id, region,
//! account, spec, usage, public key). Whatever the change, a row whose MAC no longer covers
//! what it says is refused and never unwrapped; the untouched row still loads.
//!
//! Input: a list of `(field, bytes)` edits, each `field(1) len(1) bytes(len)`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let fx = kms::fuzzing::fixture();
    let (mut rec, mut m) = (fx.row.0.clone(), fx.row.1.clone());
    let mut rest = data;
    while let [field, len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let (v, next) = tail.split_at(n);
        rest = next;
        let s = String::from_utf8_lossy(v).to_string();
        let int = |v: &[u8]| {
            v.iter()
                .fold(0i32, |a, b| a.wrapping_mul(256).wrapping_add(*b as i32))
        };
        match field % 12 {
            0 => m.wrapped = v.to_vec(),
            1 => {
                // Flip bits in the blob, in place.
                for (i, b) in v.iter().enumerate() {
                    if !m.wrapped.is_empty() {
                        let j = (i * 7 + *b as usize) % m.wrapped.len();
                        m.wrapped[j] ^= b | 1;
                    }
                }
            }
            2 => m.mac = v.to_vec(),
            3 => m.version = int(v),
            4 => m.root_version = int(v),
            5 => {
                let mut id = *m.key_id.as_bytes();
                for (i, b) in v.iter().enumerate() {
                    id[i % 16] ^= b;
                }
                m.key_id = uuid::Uuid::from_bytes(id);
            }
            6 => rec.region = s,
            7 => rec.account_id = s,
            8 => {
                let all = kms::vocab::KeySpec::ALL;
                rec.key_spec = all[v.first().copied().unwrap_or(0) as usize % all.len()];
            }
            9 => {
                let all = kms::vocab::KeyUsage::ALL;
                rec.key_usage = all[v.first().copied().unwrap_or(0) as usize % all.len()];
            }
            10 => m.public_key = Some(v.to_vec()),
            _ => m.wrapped.extend_from_slice(v),
        }
    }
    let (altered, r) = fx.load_row(&rec, &m);
    if altered {
        assert!(r.is_err(), "an altered key row was accepted");
    } else {
        assert!(r.is_ok(), "the untouched key row was refused: {r:?}");
    }
});
