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

/// One DER element read from the front of some bytes.
pub(super) struct Element<'a> {
    pub content: &'a [u8],
    /// The whole element, its tag and length too.
    pub whole: &'a [u8],
    /// What follows it.
    pub rest: &'a [u8],
}

/// The first element of `der` if its tag is `tag`. Lengths of one to three bytes, as
/// [`push_len`] writes them.
pub(super) fn expect(der: &[u8], tag: u8) -> Option<Element<'_>> {
    let (&found, rest) = der.split_first()?;
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
    (found == tag).then_some(Element {
        content,
        whole: &der[..header + len],
        rest: &rest[len..],
    })
}

/// An EC key's PKCS #8 `PrivateKeyInfo` with its curve named inside the `ECPrivateKey` too
/// (RFC 5915's `parameters [0]`), as AWS KMS writes a data key pair's private key (recorded:
/// 144 bytes for ECC_SECG_P256K1, where AWS-LC's own encoding, without it, has 135). `None`
/// for what is not such a key; returned as it is when it names its curve already.
pub(super) fn ec_pkcs8_naming_curve(pkcs8: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let info = expect(pkcs8, 0x30).filter(|e| e.rest.is_empty())?;
    let version = expect(info.content, 0x02)?;
    let algorithm = expect(version.rest, 0x30)?;
    let curve = expect(expect(algorithm.content, 0x06)?.rest, 0x06)?;
    let key = expect(algorithm.rest, 0x04)?;
    let ec_key = expect(key.content, 0x30).filter(|e| e.rest.is_empty())?;
    let secret = expect(expect(ec_key.content, 0x02)?.rest, 0x04)?;
    let optional = secret.rest;
    if optional.first() == Some(&0xa0) {
        return Some(Zeroizing::new(pkcs8.to_vec()));
    }
    let mut ec_content =
        Zeroizing::new(ec_key.content[..ec_key.content.len() - optional.len()].to_vec());
    ec_content.extend_from_slice(&element(0xa0, curve.whole));
    ec_content.extend_from_slice(optional);
    let mut info_content =
        Zeroizing::new(info.content[..info.content.len() - algorithm.rest.len()].to_vec());
    info_content.extend_from_slice(&element(0x04, &element(0x30, &ec_content)));
    info_content.extend_from_slice(key.rest);
    Some(element(0x30, &info_content))
}
