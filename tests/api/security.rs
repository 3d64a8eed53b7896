//! What lives where: plaintext data keys never reach the database or the log, customer keys
//! are never token objects, and a database row that was tampered with is refused.

use crate::support::*;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use sqlx::Row;

async fn dump_database(pool: &sqlx::PgPool) -> String {
    let tables: Vec<String> = sqlx::query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>("tablename"))
        .collect();
    assert!(tables.len() >= 6, "{tables:?}");
    let mut all = String::new();
    for t in tables {
        let rows = sqlx::query(&format!("SELECT t::text AS row FROM {t} t")).fetch_all(pool).await.unwrap();
        for r in rows {
            all.push_str(&r.get::<String, _>("row"));
            all.push('\n');
        }
    }
    all.to_lowercase()
}

#[tokio::test]
async fn plaintext_data_keys_and_secrets_appear_nowhere_in_the_database_or_log() {
    let s = Server::start().await;
    let c = s.client();
    let key = c.create_key().send().await.unwrap().key_metadata.unwrap().key_id;
    let mut secrets: Vec<Vec<u8>> = Vec::new();
    for _ in 0..5 {
        let dk = c.generate_data_key().key_id(&key).key_spec(DataKeySpec::Aes256).send().await.unwrap();
        secrets.push(dk.plaintext.unwrap().into_inner());
    }
    let pt = b"my database password is hunter2".to_vec();
    c.encrypt().key_id(&key).plaintext(Blob::new(pt.clone())).send().await.unwrap();
    secrets.push(pt);
    let pool = s.db.pool().await;
    let dump = dump_database(&pool).await;
    assert!(dump.contains(&key), "the dump covers the keys table");
    let log = s.server_log().to_lowercase();
    use base64::Engine;
    for sec in &secrets {
        // bytea columns print as hex; look for any 16-byte window of the secret too.
        for window in sec.windows(16.min(sec.len())) {
            let h = hex::encode(window);
            assert!(!dump.contains(&h), "plaintext found in the database");
            assert!(!log.contains(&h), "plaintext found in the log");
        }
        let b64 = base64::engine::general_purpose::STANDARD.encode(sec).to_lowercase();
        assert!(!dump.contains(&b64) && !log.contains(&b64));
    }
    // The administrator's secret access key is not in the database either.
    assert!(!dump.contains(&s.secret.to_lowercase()));
    assert!(!dump.contains(&hex::encode(s.secret.as_bytes())));
    assert!(!log.contains(&s.secret.to_lowercase()));
}

#[tokio::test]
async fn token_object_count_does_not_grow_with_keys() {
    let s = Server::start().await;
    let before = s.token.object_files();
    assert_eq!(before, 2, "root wrapping key and metadata MAC key");
    let c = s.client();
    for _ in 0..25 {
        let key = c.create_key().send().await.unwrap().key_metadata.unwrap().key_id;
        c.encrypt().key_id(&key).plaintext(Blob::new(b"x".to_vec())).send().await.unwrap();
    }
    assert_eq!(s.token.object_files(), before);
}

#[tokio::test]
async fn tampered_key_rows_are_refused() {
    let s = Server::start().await;
    let c = s.client();
    let a = c.create_key().send().await.unwrap().key_metadata.unwrap().key_id;
    let b = c.create_key().send().await.unwrap().key_metadata.unwrap().key_id;
    let pool = s.db.pool().await;
    // Swap b's wrapped material for a's: both blobs are genuine, but the MAC binds each to its key.
    sqlx::query(
        "UPDATE key_materials SET wrapped = (SELECT wrapped FROM key_materials WHERE key_id = $1::uuid) WHERE key_id = $2::uuid",
    )
    .bind(&a)
    .bind(&b)
    .execute(&pool)
    .await
    .unwrap();
    let r = c.encrypt().key_id(&b).plaintext(Blob::new(b"x".to_vec())).send().await;
    assert_eq!(code(r), "KeyUnavailableException");
    // The untouched key still works.
    c.encrypt().key_id(&a).plaintext(Blob::new(b"x".to_vec())).send().await.unwrap();
    assert!(s.server_log().contains("failed its integrity check"));
}
