//! The JSON request decoding and validation of every operation, and what the operation then
//! does with what it decoded, run against the real service (a SoftHSM2 token and Postgres set
//! up by `scripts/fuzz.sh`) as its administrator.
//!
//! Input: one byte choosing the operation (index into `OPERATIONS`), then the JSON body.
#![no_main]
use kms::operations::OPERATIONS;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&op, body)) = data.split_first() else {
        return;
    };
    let op = OPERATIONS[op as usize % OPERATIONS.len()].name;
    let fx = kms::fuzzing::fixture();
    match fx.dispatch(op, body) {
        Ok(v) => assert!(v.is_object(), "{op} answered {v}"),
        // Whatever the input, the service must never be the one at fault.
        Err(e) => {
            let (status, name, _) = e.wire();
            assert!(
                name != "KMSInternalException",
                "{op} failed internally ({status}) on {:?}: {e:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
});
