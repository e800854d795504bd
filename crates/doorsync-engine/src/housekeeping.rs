//! Work per connection that no write triggers: counting provider calls against the budget,
//! reading the directory, the paced drift audit, and ending pauses.

use crate::*;

impl Engine {
    /// Periodic work per connection: count the provider calls made, read the directory, run
    /// the drift audit when its pacing says so, and forget a pause that has ended.
    pub async fn housekeeping(&self) {
        let store = &self.reconciler.store;
        let now = self.reconciler.clock.now();
        self.count_calls(now).await;
        let Ok(connections) = store.list(Kind::Connection, None, 500).await else {
            return;
        };
        for record in connections {
            let Some(connection) = drift::enabled(&record) else {
                continue;
            };
            let c = connection.id.as_str();
            let Ok(state) = store.connection_state(c).await else {
                continue;
            };
            if state.paused_until.is_some_and(|u| u > now) {
                continue;
            }
            if state.paused_until.is_some() {
                let _ = store
                    .change_connection_state(c, StateChange::Resumed { now })
                    .await;
            }
            let retry_due = self
                .directory_retry
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(c)
                .map(|(t, _)| *t);
            let dir_due = retry_due.map_or_else(
                || {
                    state.last_directory_at.is_none_or(|t| {
                        now.duration_since(t).as_secs_f64()
                            >= self.config.directory_interval.as_secs_f64()
                    })
                },
                |t| t <= now,
            );
            if dir_due {
                match drift::sync_directory(&self.reconciler, connection).await {
                    Ok(counts) => {
                        tracing::info!(
                            connection = c,
                            ?counts,
                            "directory read (groups, sites, doors)"
                        );
                        self.directory_retry
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(c);
                        let _ = store
                            .change_connection_state(c, StateChange::DirectoryRead { at: now })
                            .await;
                    }
                    Err(e) => {
                        tracing::warn!(connection = c, error = %e, "reading the directory failed");
                        self.note_provider_error(c, &e, now).await;
                        let mut retry = self
                            .directory_retry
                            .lock()
                            .unwrap_or_else(|e| e.into_inner());
                        let n = retry.get(c).map_or(1, |(_, n)| n + 1);
                        let wait = Duration::from_secs(5)
                            .saturating_mul(1 << n.min(8))
                            .min(self.config.directory_interval);
                        let at = now
                            .checked_add(
                                SignedDuration::try_from(wait).unwrap_or(SignedDuration::MAX),
                            )
                            .unwrap_or(now);
                        retry.insert(c.to_owned(), (at, n));
                        continue;
                    }
                }
            }
            let state = store.connection_state(c).await.unwrap_or_default();
            if state.next_audit_at.is_none_or(|t| t <= now)
                && let Err(e) = self.audit(connection).await
            {
                tracing::warn!(connection = c, error = %e, "drift audit failed");
                self.note_provider_error(c, &e, now).await;
            }
        }
    }

    /// Adds the calls each connection's provider made since the last count to its month.
    async fn count_calls(&self, now: Timestamp) {
        let month = budget::month_key(now);
        for (c, provider) in self.reconciler.providers.built() {
            let total = provider.calls();
            let delta = {
                let mut counted = self.counted_calls.lock().unwrap_or_else(|e| e.into_inner());
                let seen = counted.entry(c.clone()).or_insert(0);
                // A rebuilt client (new credentials) starts again from zero.
                let delta = if total >= *seen { total - *seen } else { total };
                *seen = total;
                delta
            };
            if delta > 0
                && let Err(e) = self
                    .reconciler
                    .store
                    .count_calls(&c, &month, delta as i64)
                    .await
            {
                tracing::warn!(connection = c, error = %e, "counting provider calls failed");
            }
        }
    }

    async fn note_provider_error(&self, connection: &str, e: &ReconcileError, now: Timestamp) {
        if let Some(p) = e.provider_error()
            && p.kind.pauses_connection()
        {
            self.pause(connection, p.kind, &p.message, p.retry_after, now)
                .await;
        }
    }

    /// Runs the drift audit of one connection now and paces the next one; a failed audit is
    /// tried again after the shortest interval, not at once.
    pub async fn audit(
        &self,
        connection: &doorsync_core::Connection,
    ) -> Result<AuditReport, ReconcileError> {
        let _one_at_a_time = self.audit_running.lock().await;
        let store = &self.reconciler.store;
        let c = connection.id.as_str();
        let result = drift::audit_connection(&self.reconciler, connection).await;
        let now = self.reconciler.clock.now();
        let after = |d: Duration| {
            now.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
                .unwrap_or(now)
        };
        let report = match result {
            Ok(report) => report,
            Err(e) => {
                store
                    .change_connection_state(
                        c,
                        StateChange::Audited {
                            at: None,
                            next: after(self.config.audit_min_interval),
                        },
                    )
                    .await?;
                return Err(e);
            }
        };
        self.count_calls(now).await;
        let state = store.connection_state(c).await?;
        let used = if state.month.as_deref() == Some(budget::month_key(now).as_str()) {
            state.calls_this_month
        } else {
            0
        };
        let delay = budget::next_audit_delay(
            connection.monthly_call_budget,
            used.max(0) as u64,
            report.calls.max(1),
            budget::month_left(now),
            self.config.audit_min_interval,
            self.config.audit_max_interval,
        );
        store
            .change_connection_state(
                c,
                StateChange::Audited {
                    at: Some(now),
                    next: after(delay),
                },
            )
            .await?;
        tracing::info!(connection = c, ?report, next_in = ?delay, "drift audit done");
        self.wake();
        Ok(report)
    }

    /// Reads the directory and audits every enabled connection now (`POST /api/v1/sync/resync`).
    pub async fn resync(&self) -> Vec<Result<AuditReport, (String, String)>> {
        let mut out = vec![];
        let Ok(connections) = self
            .reconciler
            .store
            .list(Kind::Connection, None, 500)
            .await
        else {
            return out;
        };
        for record in &connections {
            let Some(connection) = drift::enabled(record) else {
                continue;
            };
            let c = connection.id.as_str();
            let now = self.reconciler.clock.now();
            match drift::sync_directory(&self.reconciler, connection).await {
                Ok(_) => {
                    let _ = self
                        .reconciler
                        .store
                        .change_connection_state(c, StateChange::DirectoryRead { at: now })
                        .await;
                }
                Err(e) => {
                    out.push(Err((c.to_owned(), e.to_string())));
                    continue;
                }
            }
            out.push(
                self.audit(connection)
                    .await
                    .map_err(|e| (c.to_owned(), e.to_string())),
            );
        }
        out
    }
}
