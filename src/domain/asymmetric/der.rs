//! The little DER the key pairs need: lengths, one element read, one element written.

use zeroize::Zeroizing;

/// A DER length.
pub(super) fn push_len(n: usize, out: &mut Vec<u8>) {
    match n {
        0..=0x7f => out.push(n as u8),
        0x80..=0xff => out.extend([0x81, n as u8]),
        _ => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
}

/// `tag`, the length of `content`, `content` (kept from the heap's reuse: it may hold a key).
pub(super) fn element(tag: u8, content: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(content.len() + 4));
    out.push(tag);
    push_len(content.len(), &mut out);
    out.extend_from_slice(content);
    out
}

/// The first element of `der`: its tag, its content, the whole element, and what follows it.
/// Lengths of one to three bytes, as [`push_len`] writes them.
pub(super) fn read(der: &[u8]) -> Option<(u8, &[u8], &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81 => (usize::from(*rest.first()?), &rest[1..]),
        0x82 => (
            usize::from(*rest.first()?) << 8 | usize::from(*rest.get(1)?),
            &rest[2..],
        ),
        _ => return None,
    };
    let content = rest.get(..len)?;
    let header = der.len() - rest.len();
    Some((tag, content, &der[..header + len], &rest[len..]))
}

/// An EC key's PKCS #8 `PrivateKeyInfo` with its curve named inside the `ECPrivateKey` too
/// (RFC 5915's `parameters [0]`), as AWS KMS writes a data key pair's private key (recorded:
/// 144 bytes for ECC_SECG_P256K1, where AWS-LC's own encoding, without it, has 135). `None`
/// for what is not such a key; returned as it is when it names its curve already.
pub(super) fn ec_pkcs8_naming_curve(pkcs8: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let (0x30, info, _, []) = read(pkcs8)? else {
        return None;
    };
    let (0x02, _, _, after_version) = read(info)? else {
        return None;
    };
    let (0x30, algorithm, _, after_algorithm) = read(after_version)? else {
        return None;
    };
    let (0x06, _, _, curve_part) = read(algorithm)? else {
        return None;
    };
    let (0x06, _, curve, []) = read(curve_part)? else {
        return None;
    };
    let (0x04, key, _, attributes) = read(after_algorithm)? else {
        return None;
    };
    let (0x30, ec_key, _, []) = read(key)? else {
        return None;
    };
    let (0x02, _, _, after_ec_version) = read(ec_key)? else {
        return None;
    };
    let (0x04, _, _, optional) = read(after_ec_version)? else {
        return None;
    };
    if optional.first() == Some(&0xa0) {
        return Some(Zeroizing::new(pkcs8.to_vec()));
    }
    let mut ec_content = Zeroizing::new(ec_key[..ec_key.len() - optional.len()].to_vec());
    ec_content.extend_from_slice(&element(0xa0, curve));
    ec_content.extend_from_slice(optional);
    let mut info_content = Zeroizing::new(info[..info.len() - after_algorithm.len()].to_vec());
    info_content.extend_from_slice(&element(0x04, &element(0x30, &ec_content)));
    info_content.extend_from_slice(attributes);
    Some(element(0x30, &info_content))
}
