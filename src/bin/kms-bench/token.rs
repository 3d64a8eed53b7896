//! `kms-bench token`: the token's own rates, the limits the server's figures are judged by.

use super::*;

/// The token's rate for each mechanism the server uses, on one session with a cached handle.
pub(super) async fn token(common: Common) -> Result<(), String> {
    use cryptoki::mechanism::aead::GcmParams;
    use cryptoki::mechanism::rsa::PkcsPssParams;
    use cryptoki::mechanism::{Mechanism, MechanismType};
    use kms::hsm::{BlobKind, Curve, PairKind, PrivateUse};
    let s = kms::config::Settings::load(None)?;
    let hsm = kms::server::wiring::open_hsm(&s)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let h = hsm.clone();
    tokio::task::spawn_blocking(move || h.load_service_keys(1))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let secs = common.seconds;
    let common = &common;
    let time = |name: &'static str, f: Box<dyn Fn(&cryptoki::session::Session) -> bool + Send>| {
        let hsm = hsm.clone();
        async move {
            let (n, elapsed) = hsm
                .run(move |sess| {
                    let start = Instant::now();
                    let mut n = 0u64;
                    while start.elapsed().as_secs_f64() < secs {
                        if !f(sess) {
                            break;
                        }
                        n += 1;
                    }
                    Ok((n, start.elapsed().as_secs_f64()))
                })
                .await
                .map_err(|e| e.to_string())?;
            let st = Stats {
                requests: n,
                errors: 0,
                seconds: elapsed,
                p50_us: 0,
                p99_us: 0,
                p999_us: 0,
                nodes: Vec::new(),
            };
            record(common, name, 1, &st, json!({"limit": "token"}));
            Ok::<_, String>(())
        }
    };
    time(
        "token round trip (C_GetSessionInfo)",
        Box::new(|s| s.get_session_info().is_ok()),
    )
    .await?;
    let (aes, root) = hsm
        .generate_wrapped_aes256()
        .await
        .map_err(|e| e.to_string())?;
    let aes = hsm
        .unwrap_key(aes, root, BlobKind::Aes)
        .await
        .map_err(|e| e.to_string())?;
    let obj = aes.object();
    time(
        "token AES-GCM 64 B",
        Box::new(move |s| {
            let mut iv = [1u8; 12];
            let aad = [0u8; 40];
            let Ok(p) = GcmParams::new(&mut iv, &aad, 128.into()) else {
                return false;
            };
            s.encrypt(&Mechanism::AesGcm(p), obj, &[1u8; 64]).is_ok()
        }),
    )
    .await?;
    let (rsa, _, root) = hsm
        .generate_wrapped_key_pair(PairKind::Rsa(2048), PrivateUse::Sign)
        .await
        .map_err(|e| e.to_string())?;
    let rsa = hsm
        .unwrap_key(
            rsa,
            root,
            BlobKind::Private(PairKind::Rsa(2048), PrivateUse::Sign),
        )
        .await
        .map_err(|e| e.to_string())?;
    let obj = rsa.object();
    time(
        "token RSA-2048 PSS sign",
        Box::new(move |s| {
            let params = PkcsPssParams {
                hash_alg: MechanismType::SHA256,
                mgf: cryptoki::mechanism::rsa::PkcsMgfType::MGF1_SHA256,
                s_len: 32u64.into(),
            };
            s.sign(&Mechanism::RsaPkcsPss(params), obj, &[3u8; 32])
                .is_ok()
        }),
    )
    .await?;
    let (ec, _, root) = hsm
        .generate_wrapped_key_pair(PairKind::Ec(Curve::P256), PrivateUse::Sign)
        .await
        .map_err(|e| e.to_string())?;
    let ec = hsm
        .unwrap_key(
            ec,
            root,
            BlobKind::Private(PairKind::Ec(Curve::P256), PrivateUse::Sign),
        )
        .await
        .map_err(|e| e.to_string())?;
    let obj = ec.object();
    time(
        "token P-256 ECDSA sign",
        Box::new(move |s| s.sign(&Mechanism::Ecdsa, obj, &[3u8; 32]).is_ok()),
    )
    .await?;
    let (mac, root) = hsm
        .generate_wrapped_secret(32)
        .await
        .map_err(|e| e.to_string())?;
    let mac = hsm
        .unwrap_key(mac, root, BlobKind::Secret)
        .await
        .map_err(|e| e.to_string())?;
    let obj = mac.object();
    time(
        "token HMAC-SHA256",
        Box::new(move |s| {
            s.sign(&Mechanism::Sha256Hmac, obj, b"benchmark message")
                .is_ok()
        }),
    )
    .await?;
    drop((aes, rsa, ec, mac));
    Ok(())
}
