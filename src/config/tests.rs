//! The settings: read, checked, and refused with one clear sentence.

use super::*;

/// The settings of a file holding `toml`, nothing from the environment.
fn load(toml: &str) -> Result<Settings, String> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("kms.toml");
    std::fs::write(&f, toml).unwrap();
    Settings::load_from(Some(&f), std::iter::empty())
}

/// Partitions: read from `[[partitions]]` tables; a misspelt member, a malformed cluster id
/// or a cluster listed twice is refused.
#[test]
fn partitions_are_read_and_checked() {
    let ok =
            load("[[partitions]]\ncluster_id = \"cluster-abcdefg2345\"\ntoken_label = \"a\"\naccounts = [\"111122223333\"]\n")
                .unwrap();
    assert_eq!(ok.partitions.len(), 1);
    assert_eq!(ok.partitions[0].cluster_id, "cluster-abcdefg2345");
    let misspelt =
        load("[[partitions]]\ncluster_id = \"cluster-abcdefg2345\"\ntoken_lable = \"a\"\n");
    assert!(misspelt.is_err());
    let bad = load("[[partitions]]\ncluster_id = \"cluster-1\"\ntoken_label = \"a\"\naccounts = [\"111122223333\"]\n");
    assert!(bad.err().unwrap().contains("not a cluster id"));
    let twice = load(
            "[[partitions]]\ncluster_id = \"cluster-abcdefg2345\"\ntoken_label = \"a\"\naccounts = [\"111122223333\"]\n\
             [[partitions]]\ncluster_id = \"cluster-abcdefg2345\"\ntoken_label = \"b\"\naccounts = [\"111122223333\"]\n",
        );
    assert!(twice.err().unwrap().contains("twice"));
    let owned = |accounts: &str| {
        load(&format!(
            "[[partitions]]\ncluster_id = \"cluster-abcdefg2345\"\ntoken_label = \"a\"\n{accounts}"
        ))
    };
    assert!(owned("").err().unwrap().contains("accounts"));
    let shared = load(
            "[[partitions]]\ncluster_id = \"cluster-abcdefg2345\"\ntoken_label = \"a\"\naccounts = [\"111122223333\"]\n\
             [[partitions]]\ncluster_id = \"cluster-hijklmn2345\"\ntoken_label = \"a\"\naccounts = [\"444455556666\"]\n",
        );
    assert!(shared
        .err()
        .unwrap()
        .contains("must serve the same one account"));
    let two = load(
            "[[partitions]]\ncluster_id = \"cluster-abcdefg2345\"\ntoken_label = \"a\"\naccounts = [\"111122223333\", \"444455556666\"]\n\
             [[partitions]]\ncluster_id = \"cluster-hijklmn2345\"\ntoken_label = \"a\"\naccounts = [\"444455556666\", \"111122223333\"]\n",
        );
    assert!(two
        .err()
        .unwrap()
        .contains("must serve the same one account"));
    let peers = load(
            "[[partitions]]\ncluster_id = \"cluster-abcdefg2345\"\ntoken_label = \"a\"\naccounts = [\"111122223333\"]\n\
             [[partitions]]\ncluster_id = \"cluster-hijklmn2345\"\ntoken_label = \"a\"\naccounts = [\"111122223333\"]\n",
        );
    assert!(peers.is_ok(), "{:?}", peers.err());
    let own = load(
            "[hsm]\ntoken_label = \"kms\"\n[[partitions]]\ncluster_id = \"cluster-abcdefg2345\"\ntoken_label = \"kms\"\naccounts = [\"111122223333\"]\n",
        );
    assert!(own.err().unwrap().contains("the service's own token"));
    assert!(owned("accounts = []\n")
        .err()
        .unwrap()
        .contains("no accounts"));
    let not_id = owned("accounts = [\"1234\"]\n").err().unwrap();
    assert!(not_id.contains("'1234' is not an account id"), "{not_id}");
    // An XKS key's secondary authorization names principal ARNs; anything else is refused.
    let xks = |principal: &str| {
        load(&format!(
            "[[xks_stores]]\naccess_key_ids = [\"A\"]\n[[xks_stores.keys]]\nxks_key_id = \"k\"\n\
                 key_arn = \"arn:aws:kms:us-east-1:123456789012:key/k\"\n\
                 allowed_principals = [\"{principal}\"]\n"
        ))
    };
    assert!(xks("arn:aws:iam::111122223333:role/app-*").is_ok());
    assert!(xks("role/app")
        .err()
        .unwrap()
        .contains("not a principal ARN"));
}

/// The documented example is valid and says exactly what the defaults are.
#[test]
fn example_file_matches_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("kms.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let from_file: Settings = config::Config::builder()
        .add_source(config::File::from_str(&text, config::FileFormat::Toml))
        .build()
        .unwrap()
        .try_deserialize()
        .unwrap();
    let d = Settings::default();
    assert_eq!(from_file.listen, d.listen);
    assert_eq!(from_file.allow_plain_http, d.allow_plain_http);
    assert_eq!(from_file.regions, d.regions);
    assert_eq!(from_file.account_id, d.account_id);
    assert_eq!(from_file.database_url, d.database_url);
    assert_eq!(
        from_file.database_max_connections,
        d.database_max_connections
    );
    assert_eq!(
        from_file.database_commit_timeout_ms,
        d.database_commit_timeout_ms
    );
    assert_eq!(from_file.max_body_bytes, d.max_body_bytes);
    assert_eq!(from_file.drain_seconds, d.drain_seconds);
    assert_eq!(from_file.request_timeout_ms, d.request_timeout_ms);
    assert_eq!(from_file.max_connections, d.max_connections);
    assert_eq!(
        from_file.max_connections_per_source,
        d.max_connections_per_source
    );
    assert_eq!(from_file.sts_min_session_seconds, d.sts_min_session_seconds);
    assert_eq!(from_file.scheduler_interval_ms, d.scheduler_interval_ms);
    assert_eq!(
        from_file.audit_checkpoint_interval_ms,
        d.audit_checkpoint_interval_ms
    );
    assert_eq!(from_file.audit_enabled, d.audit_enabled);
    assert_eq!(from_file.audit_anchor_file, d.audit_anchor_file);
    assert_eq!(
        from_file.audit_max_checkpoint_age_secs,
        d.audit_max_checkpoint_age_secs
    );
    assert_eq!(from_file.enable_test_hooks, d.enable_test_hooks);
    assert_eq!(
        from_file.quota.auth_failures_per_second,
        d.quota.auth_failures_per_second
    );
    assert_eq!(
        from_file.quota.auth_failure_burst,
        d.quota.auth_failure_burst
    );
    assert_eq!(
        from_file.quota.auth_failures_audited_per_second,
        d.quota.auth_failures_audited_per_second
    );
    assert_eq!(from_file.quota.keys_per_region, d.quota.keys_per_region);
    assert_eq!(from_file.quota.grants_per_key, d.quota.grants_per_key);
    assert_eq!(
        from_file.quota.aliases_per_region,
        d.quota.aliases_per_region
    );
    assert_eq!(
        from_file.quota.import_parameters_per_second,
        d.quota.import_parameters_per_second
    );
    assert_eq!(from_file.log_format, d.log_format);
    assert_eq!(from_file.hsm.failover_labels, d.hsm.failover_labels);
    assert_eq!(from_file.metrics_listen, d.metrics_listen);
    assert_eq!(from_file.console_listen, d.console_listen);
    assert_eq!(from_file.console_session_minutes, d.console_session_minutes);
    assert_eq!(from_file.clock_offset_file, d.clock_offset_file);
    assert_eq!(from_file.fault_injection_file, d.fault_injection_file);
    assert_eq!(from_file.log, d.log);
    assert_eq!(from_file.hsm.module, d.hsm.module);
    assert_eq!(from_file.hsm.token_label, d.hsm.token_label);
    assert_eq!(from_file.hsm.session_pool_size, d.hsm.session_pool_size);
    assert_eq!(from_file.hsm.inline_calls, d.hsm.inline_calls);
    assert_eq!(
        from_file.hsm.oaep_sha256_import_in_service,
        d.hsm.oaep_sha256_import_in_service
    );
    assert_eq!(from_file.cache.key_metadata, d.cache.key_metadata);
    assert_eq!(from_file.cache.key_handles, d.cache.key_handles);
    assert_eq!(from_file.cache.signing_keys, d.cache.signing_keys);
    assert_eq!(from_file.quota.crypto_per_second, d.quota.crypto_per_second);
    assert_eq!(
        from_file.quota.management_per_second,
        d.quota.management_per_second
    );
}

/// A misspelt setting is refused, in the file and in the environment; the `KMS_…`
/// variables the command line and scripts read for themselves are not settings.
#[test]
fn a_misspelt_setting_is_refused_not_ignored() {
    let none = || std::iter::empty::<(String, String)>();
    let dir = tempfile::tempdir().unwrap();
    for (text, word) in [
        ("listenn = \"127.0.0.1:1\"\n", "`listenn`"),
        ("[hsm]\ntoken_labl = \"kms\"\n", "`token_labl`"),
        ("[quota]\nkeys_per_regoin = 5\n", "`keys_per_regoin`"),
        ("[tls]\ncert = \"x\"\n", "`cert`"),
    ] {
        let f = dir.path().join("kms.toml");
        std::fs::write(&f, text).unwrap();
        let e = Settings::load_from(Some(&f), none()).err().unwrap();
        assert!(e.contains(&format!("{word} is not a setting")), "{e}");
    }
    let env = |k: &str| std::iter::once((k.to_string(), "1".to_string()));
    for k in [
        "KMS_HSM__PINN",
        "KMS_LISTNE",
        "KMS_CACHE__KEY_HANDELS",
        "KMS_REGION",
        "KMS_HMS__PIN",
    ] {
        let e = Settings::load_from(None, env(k)).err().unwrap();
        assert!(e.contains("is not a setting"), "{k}: {e}");
    }
    for k in [
        "KMS_TEST_DATABASE_URL",
        "KMS_DEV_STORE",
        "KMS_ADMIN_ACCESS_KEY_ID",
        "KMS_OPERATOR",
        // Another program's: a Kubernetes service named `kms`, a user's shell.
        "KMS_SERVICE_HOST",
        "KMS_PORT",
        "KMS_PORT_4000_TCP_ADDR",
        "KMS_KEY_ID",
    ] {
        assert!(Settings::load_from(None, env(k)).is_ok(), "{k}");
    }
    let ok = Settings::load_from(None, env("KMS_QUOTA__KEYS_PER_REGION")).unwrap();
    assert_eq!(ok.quota.keys_per_region, 1);
}

#[test]
fn a_commit_timeout_not_below_the_request_timeout_is_refused() {
    let e = Settings {
        request_timeout_ms: 3000,
        database_commit_timeout_ms: Some(3000),
        ..Settings::default()
    }
    .checked()
    .err()
    .expect("refused");
    assert_eq!(
        e,
        "database_commit_timeout_ms must be above 0 and below request_timeout_ms (3000), not 3000"
    );
    let Ok(s) = (Settings {
        request_timeout_ms: 1500,
        ..Settings::default()
    })
    .checked() else {
        panic!("accepted")
    };
    assert_eq!(s.commit_timeout(), std::time::Duration::from_millis(750));
    assert_eq!(
        Settings::default().commit_timeout(),
        std::time::Duration::from_secs(2)
    );
}

#[test]
fn a_key_generation_timeout_below_a_second_is_refused() {
    let e = Settings {
        key_generation_timeout_ms: 999,
        ..Settings::default()
    }
    .checked()
    .err()
    .expect("refused");
    assert!(
        e.starts_with("key_generation_timeout_ms must be at least 1000"),
        "{e}"
    );
}

#[test]
fn passwords_are_not_repeated_in_messages() {
    assert_eq!(
        url_without_password("postgres://u:hunter2@db:5432/kms").unwrap(),
        "postgres://u@db:5432/kms"
    );
}

/// `trusted_proxies` and `xks_client_endpoints` are read from the file; an entry that is not
/// an address (a CIDR block) or an XKS proxy endpoint is refused, naming it.
#[test]
fn trusted_proxies_and_proxy_endpoints_are_checked() {
    let ok = load(
        "trusted_proxies = [\"10.0.0.10\", \"10.0.1.0/24\", \"2001:db8::/32\"]\n\
         xks_client_endpoints = [\"https://xks.example.internal\", \"https://10.0.0.5:8443\"]\n",
    )
    .unwrap();
    assert_eq!(ok.trusted_proxies.len(), 3);
    assert_eq!(ok.xks_client_endpoints.len(), 2);
    let e = load("trusted_proxies = [\"10.0.0.0/33\"]\n").err().unwrap();
    assert!(e.contains("trusted_proxies: '10.0.0.0/33'"), "{e}");
    let e = load("xks_client_endpoints = [\"http://xks.example.internal\"]\n")
        .err()
        .unwrap();
    assert!(
        e.contains("xks_client_endpoints: 'http://xks.example.internal'"),
        "{e}"
    );
    let e = load("xks_client_endpoints = [\"https://xks.example.internal/kms\"]\n")
        .err()
        .unwrap();
    assert!(e.contains("is not an XKS proxy endpoint"), "{e}");
}
