//! The ciphertext blob parser: any bytes a caller sends as `CiphertextBlob`.
#![no_main]
use kms::domain::ciphertext;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((header, body)) = ciphertext::parse(data) {
        // What parses re-encodes to the bytes it came from.
        let bytes = header.to_bytes();
        assert_eq!(&data[..bytes.len()], &bytes[..]);
        assert_eq!(bytes.len() + body.len(), data.len());
        let _ = ciphertext::aad(&header, &Default::default());
    }
});
