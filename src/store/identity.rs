//! [`IdentityStore`](super::IdentityStore) (accounts, principals, access keys, sessions,
//! identity policies, the operator's events), written once for both stores: one SQL text per
//! statement (`$N` placeholders), one method body. What differs is named in each store's
//! module: `begin_write`, `begin_snapshot` (one consistent view: Postgres `REPEATABLE READ`)
//! and `commit`; `REQUEST_TARGET` (an audit event's `requestParameters.target`),
//! `INSTR` (the position of a text in another) and `ACCESS_KEYS_IN_CREATION_ORDER`; the row reader `tag_from_row`, `cell`, `map_err`, `write_on`.

/// The events the index of decisions by what bodies say holds (`audit_events_decided_by_body`,
/// keyed on the name and `decision_key()`): every query of it names them so, as its predicate.
/// One index for every decision read from bodies, so that an append works the event's name
/// out of its body once, not once an index (sql/0046).
pub(crate) const DECIDED: &str = "IN ('ActivateAccessKey', 'CreateAccessKey', 'CreateRole', \
     'DeactivateAccessKey', 'DeleteAccessKey', 'DeleteKey', 'DeletePrincipal', 'GrantEnded', \
     'InvocationsLeased', 'SealCoverage')";

/// `impl IdentityStore for $store`.
macro_rules! identity_store {
    ($store:ty) => {
        impl $store {
            /// The events of `audit_events_decisions_by_body` whose hashed body's name is
            /// `names` (an SQL test: `= '…'` or `IN (…)`) and whose decision key is `key`,
            /// before sequence number `before`, newest first, at most `limit`: sequence number,
            /// body and seal.
            pub(super) async fn decided_events(
                &self,
                names: &str,
                key: &str,
                before: i64,
                limit: i64,
            ) -> Result<Vec<(i64, String, Option<Vec<u8>>)>, StoreError> {
                use super::identity::DECIDED;
                let q = format!(
                    "SELECT seq, body, seal FROM audit_events WHERE {BODY_EVENT_NAME} {DECIDED} \
                       AND {BODY_EVENT_NAME} {names} AND {} = $1 AND seq < $3 \
                     ORDER BY seq DESC LIMIT $2",
                    decision_key()
                );
                let rows = sqlx::query(&q)
                    .bind(key)
                    .bind(limit)
                    .bind(before)
                    .all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|r| Ok((cell(r, "seq")?, cell(r, "body")?, cell(r, "seal")?)))
                    .collect()
            }
        }

        #[async_trait]
        impl IdentityStore for $store {
            async fn access_key_ended_per_trail(
                &self,
                access_key_id: &str,
            ) -> Result<Option<i64>, StoreError> {
                use super::identity::DECIDED;
                let q = format!(
                    "SELECT seq FROM audit_events WHERE {BODY_EVENT_NAME} {DECIDED} \
                       AND {BODY_EVENT_NAME} IN ('DeactivateAccessKey', 'DeleteAccessKey') \
                       AND {} = $1 ORDER BY seq DESC LIMIT 1",
                    decision_key()
                );
                sqlx::query_scalar(&q).bind(access_key_id).maybe(&self.pool).await
            }

            async fn access_key_ends_per_trail(
                &self,
                access_key_id: &str,
                before: i64,
                limit: i64,
            ) -> Result<Vec<(i64, String, Option<Vec<u8>>)>, StoreError> {
                self.decided_events(
                    "IN ('DeactivateAccessKey', 'DeleteAccessKey')",
                    access_key_id,
                    before,
                    limit,
                )
                .await
            }

            async fn principal_deletions_per_trail(
                &self,
                arn: &str,
                before: i64,
                limit: i64,
            ) -> Result<Vec<(i64, String, Option<Vec<u8>>)>, StoreError> {
                self.decided_events("= 'DeletePrincipal'", arn, before, limit).await
            }

            async fn access_key_permits_after(
                &self,
                access_key_id: &str,
                after: i64,
                limit: i64,
            ) -> Result<Vec<(String, i64)>, StoreError> {
                use super::identity::DECIDED;
                // Each through the index of decisions (name, key, sequence number): activations
                // by target, creations by the key id.
                let key = decision_key();
                let q = format!(
                    "SELECT name, seq FROM ( \
                       SELECT * FROM (SELECT {BODY_EVENT_NAME} AS name, seq FROM audit_events \
                         WHERE {BODY_EVENT_NAME} {DECIDED} AND {BODY_EVENT_NAME} = 'ActivateAccessKey' \
                           AND {key} = $1 AND seq > $2 \
                         ORDER BY seq DESC LIMIT $3) AS activated \
                       UNION ALL \
                       SELECT * FROM (SELECT {BODY_EVENT_NAME} AS name, seq FROM audit_events \
                         WHERE {BODY_EVENT_NAME} {DECIDED} AND {BODY_EVENT_NAME} = 'CreateAccessKey' \
                           AND {key} = $1 AND seq > $2 \
                         ORDER BY seq DESC LIMIT $3) AS created \
                     ) AS permits ORDER BY seq DESC LIMIT $3"
                );
                let rows = sqlx::query(&q)
                    .bind(access_key_id)
                    .bind(after)
                    .bind(limit)
                    .all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|r| Ok((cell(r, "name")?, cell(r, "seq")?)))
                    .collect()
            }

            async fn principal_deleted_per_trail(&self, arn: &str) -> Result<Option<i64>, StoreError> {
                use super::identity::DECIDED;
                let q = format!(
                    "SELECT seq FROM audit_events WHERE {BODY_EVENT_NAME} {DECIDED} \
                       AND {BODY_EVENT_NAME} = 'DeletePrincipal' AND {} = $1 ORDER BY seq DESC LIMIT 1",
                    decision_key()
                );
                sqlx::query_scalar(&q).bind(arn).maybe(&self.pool).await
            }

            async fn principal_changes_per_trail(
                &self,
                arn: &str,
                before: i64,
                limit: i64,
            ) -> Result<Vec<(i64, String, Option<Vec<u8>>)>, StoreError> {
                self.decided_events("IN ('CreateRole', 'DeletePrincipal')", arn, before, limit)
                    .await
            }

            async fn access_key_created_per_trail(
                &self,
                access_key_id: &str,
            ) -> Result<Option<i64>, StoreError> {
                use super::identity::DECIDED;
                let q = format!(
                    "SELECT seq FROM audit_events WHERE {BODY_EVENT_NAME} {DECIDED} \
                       AND {BODY_EVENT_NAME} = 'CreateAccessKey' AND {} = $1 ORDER BY seq DESC LIMIT 1",
                    decision_key()
                );
                sqlx::query_scalar(&q).bind(access_key_id).maybe(&self.pool).await
            }

            async fn ensure_account(&self, account_id: &str, name: &str) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO accounts (account_id, name) VALUES ($1, $2) ON CONFLICT (account_id) DO NOTHING",
                )
                .bind(account_id)
                .bind(name)
                .write_on(self)
                .await?;
                Ok(())
            }

            async fn ensure_principal(
                &self,
                arn: &str,
                account_id: &str,
                kind: &str,
                name: &str,
                admin: bool,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO principals (arn, account_id, kind, name, is_admin) VALUES ($1,$2,$3,$4,$5) \
                     ON CONFLICT (arn) DO NOTHING",
                )
                .bind(arn)
                .bind(account_id)
                .bind(kind)
                .bind(name)
                .bind(admin)
                .write_on(self)
                .await?;
                Ok(())
            }

            async fn put_access_key(&self, a: &AccessKeyRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO access_keys (access_key_id, principal_arn, status, secret_blob, root_version, mac, created_at) \
                     VALUES ($1,$2,$3,$4,$5,$6,$7)",
                )
                .bind(&a.access_key_id)
                .bind(&a.principal_arn)
                .bind(&a.status)
                .bind(&a.secret_blob)
                .bind(a.root_version)
                .bind(&a.mac)
                .bind(Utc::now())
                .write_on(self)
                .await?;
                Ok(())
            }

            async fn access_key(&self, access_key_id: &str) -> Result<Option<AccessKeyRecord>, StoreError> {
                sqlx::query_as(
                    "SELECT a.access_key_id, a.principal_arn, p.account_id, a.status, a.secret_blob, a.root_version, a.mac \
                     FROM access_keys a JOIN principals p ON p.arn = a.principal_arn WHERE a.access_key_id = $1",
                )
                .bind(access_key_id)
                .maybe(&self.pool).await
            }

            async fn access_keys_of(
                &self,
                principal_arn: &str,
            ) -> Result<Vec<AccessKeyRecord>, StoreError> {
                let q = format!(
                    "SELECT a.access_key_id, a.principal_arn, p.account_id, a.status, a.secret_blob, a.root_version, a.mac \
                     FROM access_keys a JOIN principals p ON p.arn = a.principal_arn WHERE a.principal_arn = $1 \
                     ORDER BY {ACCESS_KEYS_IN_CREATION_ORDER}"
                );
                sqlx::query_as(&q)
                .bind(principal_arn)
                .all(&self.pool).await
            }

            async fn principal_authz(&self, arn: &str) -> Result<Option<PrincipalAuthz>, StoreError> {
                // One snapshot for the principal and everything that goes with it.
                let mut tx = self.begin_snapshot().await?;
                let Some(p) = sqlx::query(
                    "SELECT account_id, kind, trust_policy, via_service, authz_mac FROM principals WHERE arn = $1",
                )
                .bind(arn)
                .maybe(&mut *tx).await?
                else {
                    return Ok(None);
                };
                let policies = sqlx::query(
                    "SELECT policy_name, document FROM identity_policies WHERE principal_arn = $1",
                )
                .bind(arn)
                .all(&mut *tx).await?
                .iter()
                .map(|r| Ok((cell(r, "policy_name")?, cell(r, "document")?)))
                .collect::<Result<Vec<_>, StoreError>>()?;
                let tags =
                    sqlx::query("SELECT tag_key, tag_value FROM principal_tags WHERE principal_arn = $1")
                        .bind(arn)
                        .all(&mut *tx).await?
                        .iter()
                        .map(tag_from_row)
                        .collect::<Result<Vec<_>, StoreError>>()?;
                self.commit(tx).await?;
                Ok(Some(PrincipalAuthz {
                    account_id: cell(&p, "account_id")?,
                    kind: cell(&p, "kind")?,
                    trust_policy: cell(&p, "trust_policy")?,
                    via_service: cell(&p, "via_service")?,
                    policies,
                    tags,
                    mac: cell(&p, "authz_mac")?,
                }))
            }

            async fn set_principal_mac(&self, arn: &str, mac: &[u8]) -> Result<bool, StoreError> {
                let n = sqlx::query(
                    "UPDATE principals SET authz_mac = $2 WHERE arn = $1 AND authz_mac IS NULL",
                )
                .bind(arn)
                .bind(mac)
                .write_on(self)
                .await?
                .rows_affected();
                Ok(n == 1)
            }

            async fn change_principal(
                &self,
                arn: &str,
                change: &PrincipalChange,
                expected: Option<&[u8]>,
                mac: &[u8],
            ) -> Result<(), StoreError> {
                use PrincipalChange::*;
                let mut tx = self.begin_write().await?;
                let stale = || StoreError::Conflict {
                    constraint: "principal_mac".into(),
                };
                match (change, expected) {
                    (
                        CreateUser {
                            account_id,
                            name,
                            admin,
                        },
                        None,
                    ) => {
                        sqlx::query(
                            "INSERT INTO principals (arn, account_id, kind, name, is_admin, authz_mac) VALUES ($1,$2,'user',$3,$4,$5)",
                        )
                        .bind(arn)
                        .bind(account_id)
                        .bind(name)
                        .bind(admin)
                        .bind(mac)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                    }
                    (
                        PutRole {
                            account_id,
                            name,
                            trust_policy,
                        },
                        None,
                    ) => {
                        sqlx::query(
                            "INSERT INTO principals (arn, account_id, kind, name, trust_policy, authz_mac) VALUES ($1,$2,'role',$3,$4,$5)",
                        )
                        .bind(arn)
                        .bind(account_id)
                        .bind(name)
                        .bind(trust_policy)
                        .bind(mac)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                    }
                    (_, None) => return Err(stale()),
                    (change, Some(expected)) => {
                        // The guard: the MAC the domain verified is still the row's (this also takes
                        // the row's write lock until the commit).
                        let n = sqlx::query(
                            "UPDATE principals SET authz_mac = $2 WHERE arn = $1 AND authz_mac = $3",
                        )
                        .bind(arn)
                        .bind(mac)
                        .bind(expected)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?
                        .rows_affected();
                        if n != 1 {
                            return Err(stale());
                        }
                        if matches!(change, PutRole { .. }) {
                            // A role whose trust policy is replaced keeps no session issued under
                            // the old one.
                            sqlx::query("DELETE FROM sessions WHERE role_arn = $1")
                                .bind(arn)
                                .execute(&mut *tx)
                                .await
                                .map_err(map_err)?;
                        }
                        let q = match change {
                            CreateUser { .. } => None,
                            PutRole { trust_policy, .. } => Some(
                                sqlx::query("UPDATE principals SET trust_policy = $2 WHERE arn = $1 AND kind = 'role'")
                                    .bind(arn)
                                    .bind(trust_policy.clone()),
                            ),
                            PutPolicy { name, document } => Some(
                                sqlx::query(
                                    "INSERT INTO identity_policies (principal_arn, policy_name, document, created_at, updated_at) \
                                     VALUES ($1, $2, $3, $4, $4) \
                                     ON CONFLICT (principal_arn, policy_name) DO UPDATE SET document = excluded.document, \
                                     updated_at = excluded.updated_at",
                                )
                                .bind(arn)
                                .bind(name.clone())
                                .bind(document.clone())
                                .bind(Utc::now()),
                            ),
                            DeletePolicy { name } => Some(
                                sqlx::query("DELETE FROM identity_policies WHERE principal_arn = $1 AND policy_name = $2")
                                    .bind(arn)
                                    .bind(name.clone()),
                            ),
                            PutTag(t) => Some(
                                sqlx::query(
                                    "INSERT INTO principal_tags (principal_arn, tag_key, tag_value) VALUES ($1,$2,$3) \
                                     ON CONFLICT (principal_arn, tag_key) DO UPDATE SET tag_value = excluded.tag_value",
                                )
                                .bind(arn)
                                .bind(t.key.clone())
                                .bind(t.value.clone()),
                            ),
                            SetService(s) => Some(
                                sqlx::query("UPDATE principals SET via_service = $2 WHERE arn = $1")
                                    .bind(arn)
                                    .bind(s.clone()),
                            ),
                        };
                        if let Some(q) = q {
                            if q.execute(&mut *tx).await.map_err(map_err)?.rows_affected() != 1 {
                                return Err(stale());
                            }
                        }
                    }
                }
                self.commit(tx).await?;
                Ok(())
            }

            async fn principals_without_mac(&self) -> Result<Vec<String>, StoreError> {
                let rows = sqlx::query("SELECT arn FROM principals WHERE authz_mac IS NULL ORDER BY arn")
                    .all(&self.pool).await?;
                rows.iter().map(|r| cell(r, "arn")).collect()
            }

            async fn put_role(
                &self,
                arn: &str,
                account_id: &str,
                name: &str,
                trust_policy: &str,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO principals (arn, account_id, kind, name, trust_policy) VALUES ($1,$2,'role',$3,$4) \
                     ON CONFLICT (arn) DO UPDATE SET trust_policy = excluded.trust_policy",
                )
                .bind(arn)
                .bind(account_id)
                .bind(name)
                .bind(trust_policy)
                .write_on(self)
                .await?;
                Ok(())
            }

            async fn role(&self, arn: &str) -> Result<Option<(String, String)>, StoreError> {
                let row = sqlx::query(
                    "SELECT account_id, trust_policy FROM principals WHERE arn = $1 AND kind = 'role'",
                )
                .bind(arn)
                .maybe(&self.pool).await?;
                row.map(|r| {
                    Ok((
                        cell(&r, "account_id")?,
                        cell::<Option<String>>(&r, "trust_policy")?.unwrap_or_default(),
                    ))
                })
                .transpose()
            }

            async fn insert_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO sessions (access_key_id, role_arn, session_name, secret_blob, root_version, token_sha256, expires_at, mac) \
                     VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
                )
                .bind(&s.access_key_id)
                .bind(&s.role_arn)
                .bind(&s.session_name)
                .bind(&s.secret_blob)
                .bind(s.root_version)
                .bind(&s.token_sha256)
                .bind(s.expires_at)
                .bind(&s.mac)
                .write_on(self)
                .await?;
                Ok(())
            }

            async fn purge_sessions(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
                let r = sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
                    .bind(before)
                    .write_on(self)
                    .await?;
                Ok(r.rows_affected())
            }

            async fn session(&self, access_key_id: &str) -> Result<Option<SessionRecord>, StoreError> {
                sqlx::query_as(
                    "SELECT s.access_key_id, s.role_arn, p.account_id, s.session_name, s.secret_blob, s.root_version, \
                     s.token_sha256, s.expires_at, s.mac FROM sessions s JOIN principals p ON p.arn = s.role_arn \
                     WHERE s.access_key_id = $1",
                )
                .bind(access_key_id)
                .maybe(&self.pool).await
            }

            async fn principal_tags(&self, principal_arn: &str) -> Result<Vec<Tag>, StoreError> {
                let rows = sqlx::query(
                    "SELECT tag_key, tag_value FROM principal_tags WHERE principal_arn = $1 ORDER BY tag_key",
                )
                .bind(principal_arn)
                .all(&self.pool).await?;
                rows.iter().map(tag_from_row).collect()
            }

            async fn principal_service(&self, principal_arn: &str) -> Result<Option<String>, StoreError> {
                let row = sqlx::query("SELECT via_service FROM principals WHERE arn = $1")
                    .bind(principal_arn)
                    .maybe(&self.pool).await?;
                match row {
                    Some(r) => cell(&r, "via_service"),
                    None => Ok(None),
                }
            }

            async fn set_principal_service(
                &self,
                principal_arn: &str,
                service: Option<&str>,
            ) -> Result<bool, StoreError> {
                let n = sqlx::query("UPDATE principals SET via_service = $2 WHERE arn = $1")
                    .bind(principal_arn)
                    .bind(service)
                    .write_on(self)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            }

            async fn put_principal_tag(&self, principal_arn: &str, tag: &Tag) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO principal_tags (principal_arn, tag_key, tag_value) VALUES ($1,$2,$3) \
                     ON CONFLICT (principal_arn, tag_key) DO UPDATE SET tag_value = excluded.tag_value",
                )
                .bind(principal_arn)
                .bind(&tag.key)
                .bind(&tag.value)
                .write_on(self)
                .await?;
                Ok(())
            }

            async fn delete_principal(&self, arn: &str) -> Result<Option<Vec<GrantRecord>>, StoreError> {
                let mut tx = self.begin_write().await?;
                sqlx::query("DELETE FROM access_keys WHERE principal_arn = $1")
                    .bind(arn)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                let r = sqlx::query("DELETE FROM principals WHERE arn = $1")
                    .bind(arn)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                // Grants to the principal (and, for a role, to its sessions) go with it: one re-created
                // with the same name does not inherit them (AWS tells principals apart by unique id).
                // The domain has ended each in the trail first; the ones it removes are told, so
                // that a grant created meanwhile is ended too.
                let grants: Vec<GrantRecord> = sqlx::query_as(&format!(
                    "DELETE FROM grants WHERE {} RETURNING {GRANT_COLUMNS}",
                    crate::store::GRANTS_TO_PRINCIPAL
                ))
                .bind(arn)
                .bind(crate::store::sessions_of(arn))
                .fetch_all(&mut *tx)
                .await
                .map_err(map_err)?;
                if r.rows_affected() == 0 {
                    return Ok(None);
                }
                self.commit(tx).await?;
                Ok(Some(grants))
            }

            async fn delete_access_key(&self, access_key_id: &str) -> Result<bool, StoreError> {
                let r = sqlx::query("DELETE FROM access_keys WHERE access_key_id = $1")
                    .bind(access_key_id)
                    .write_on(self)
                    .await?;
                Ok(r.rows_affected() > 0)
            }

            async fn record_admin_event(
                &self,
                operator: &str,
                action: &str,
                target: &str,
                detail: serde_json::Value,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO admin_events (at, operator, action, target, detail) VALUES ($1,$2,$3,$4,$5)",
                )
                .bind(Utc::now())
                .bind(operator)
                .bind(action)
                .bind(target)
                .bind(sqlx::types::Json(&detail))
                .write_on(self)
                .await?;
                Ok(())
            }

            async fn set_access_key_status(
                &self,
                access_key_id: &str,
                status: &str,
                old_mac: &[u8],
                mac: &[u8],
            ) -> Result<bool, StoreError> {
                let r = sqlx::query(
                    "UPDATE access_keys SET status = $2, mac = $3 WHERE access_key_id = $1 AND mac = $4",
                )
                        .bind(access_key_id)
                        .bind(status)
                        .bind(mac)
                        .bind(old_mac)
                        .write_on(self)
                        .await?;
                Ok(r.rows_affected() > 0)
            }

            async fn account_exists(&self, account_id: &str) -> Result<bool, StoreError> {
                let r = sqlx::query("SELECT 1 FROM accounts WHERE account_id = $1")
                    .bind(account_id)
                    .maybe(&self.pool).await?;
                Ok(r.is_some())
            }

            async fn roles_whose_trust_contains(&self, text: &str) -> Result<Vec<String>, StoreError> {
                let q = format!(
                    "SELECT arn FROM principals WHERE kind = 'role' AND trust_policy IS NOT NULL AND {INSTR}(trust_policy, $1) > 0 ORDER BY arn"
                );
                let rows = sqlx::query(&q)
                .bind(text)
                .all(&self.pool).await?;
                rows.iter()
                    .map(|r| r.try_get::<String, _>("arn").map_err(map_err))
                    .collect()
            }

            async fn principal_exists(&self, arn: &str) -> Result<bool, StoreError> {
                let r = sqlx::query("SELECT 1 FROM principals WHERE arn = $1")
                    .bind(arn)
                    .maybe(&self.pool).await?;
                Ok(r.is_some())
            }

            async fn principals_of(
                &self,
                account_id: &str,
                limit: i64,
            ) -> Result<Vec<String>, StoreError> {
                let rows = sqlx::query("SELECT arn FROM principals WHERE account_id = $1 ORDER BY arn LIMIT $2")
                    .bind(account_id)
                    .bind(limit)
                    .all(&self.pool).await?;
                rows.iter()
                    .map(|r| r.try_get::<String, _>("arn").map_err(map_err))
                    .collect()
            }

            async fn put_identity_policy(
                &self,
                principal_arn: &str,
                name: &str,
                document: &str,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO identity_policies (principal_arn, policy_name, document, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $4) \
                     ON CONFLICT (principal_arn, policy_name) DO UPDATE SET document = excluded.document, \
                     updated_at = excluded.updated_at",
                )
                .bind(principal_arn)
                .bind(name)
                .bind(document)
                .bind(Utc::now())
                .write_on(self)
                .await?;
                Ok(())
            }

            async fn delete_identity_policy(
                &self,
                principal_arn: &str,
                name: &str,
            ) -> Result<bool, StoreError> {
                let r = sqlx::query(
                    "DELETE FROM identity_policies WHERE principal_arn = $1 AND policy_name = $2",
                )
                .bind(principal_arn)
                .bind(name)
                .write_on(self)
                .await?;
                Ok(r.rows_affected() > 0)
            }

            async fn identity_policies(
                &self,
                principal_arn: &str,
            ) -> Result<Vec<(String, String)>, StoreError> {
                let rows = sqlx::query(
                    "SELECT policy_name, document FROM identity_policies WHERE principal_arn = $1 ORDER BY policy_name",
                )
                .bind(principal_arn)
                .all(&self.pool).await?;
                rows.iter()
                    .map(|r| Ok((cell(r, "policy_name")?, cell(r, "document")?)))
                    .collect()
            }
        }
    };
}

pub(crate) use identity_store;
