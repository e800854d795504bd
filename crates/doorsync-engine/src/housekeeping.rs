//! Work per connection that no write triggers: counting provider calls against the budget,
//! reading the directory, the paced drift audit, and ending pauses.

use crate::reconcile::on;
use crate::scheduler::after_now;
use crate::*;

fn lease_duration(lease: SignedDuration) -> Duration {
    Duration::try_from(lease).unwrap_or(Duration::from_secs(15))
}

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
        // The conditions alerting now, read once: a round writes nothing for alerts unless a
        // condition begins, lasts or ends.
        let alerting: std::collections::BTreeSet<String> = store
            .active_alerts()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|a| a.condition)
            .collect();
        for record in connections {
            let Some(connection) = drift::enabled(&record) else {
                continue;
            };
            let c = connection.id.as_str();
            let Ok(state) = store.connection_state(c).await else {
                continue;
            };
            if let Err(e) = self.connection_alerts(c, &state, &alerting, now).await {
                tracing::warn!(connection = c, error = %e, "looking at alerts failed");
            }
            let usable = match state.paused_until {
                Some(until) if until > now => false,
                Some(_) => self.probe(connection).await,
                None => true,
            };
            if !usable {
                continue;
            }
            self.directory_if_due(connection, now).await;
            self.doors_if_locations_changed(connection).await;
            let state = store.connection_state(c).await.unwrap_or_default();
            if state.passes_out_since.is_some()
                && state.passes_read_at.is_none_or(|t| {
                    now.duration_since(t).as_secs_f64()
                        >= self.config.allotment_interval.as_secs_f64()
                })
            {
                self.with_work_lease(&format!("allotment:{c}"), self.read_allotment(connection))
                    .await;
            }
            if state.next_audit_at.is_none_or(|t| t <= now)
                && let Err(e) = self.audit(connection).await
            {
                tracing::warn!(connection = c, error = %e, "drift audit failed");
                self.note_provider_error(c, &e, now).await;
            }
        }
    }

    /// Ends a pause that has run out with one call, made by one instance: the connection
    /// resumes (and the subjects waiting on it run) if the provider answers, and pauses again
    /// for twice as long if not. Returns whether the connection is usable now.
    pub(crate) async fn probe(&self, connection: &doorsync_core::Connection) -> bool {
        let c = connection.id.as_str();
        let r = &self.reconciler;
        let result = self
            .with_work_lease(&format!("probe:{c}"), async {
                let provider = r.providers.provider(connection).map_err(on(c))?;
                provider.probe().await.map_err(on(c))
            })
            .await;
        let now = r.clock.now();
        match result {
            None => false,
            Some(Err(e))
                if e.provider_error()
                    .is_some_and(|p| p.kind.pauses_connection()) =>
            {
                self.note_provider_error(c, &e, now).await;
                false
            }
            // Any answer, even a refusal, says the provider is up.
            Some(_) => {
                let _ = r
                    .store
                    .change_connection_state(c, StateChange::Resumed { now })
                    .await;
                tracing::info!(connection = c, "provider answers again: connection resumed");
                self.wake();
                true
            }
        }
    }

    /// Reads the account's Mobile Pass allotment; when passes are available again, the
    /// subjects never invited on this connection are looked at again.
    pub(crate) async fn read_allotment(&self, connection: &doorsync_core::Connection) {
        let r = &self.reconciler;
        let c = connection.id.as_str();
        let Ok(provider) = r.providers.provider(connection) else {
            return;
        };
        let allotment = match provider.pass_allotment().await {
            Ok(Some(a)) => a,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(connection = c, error = %e, "reading the Mobile Pass allotment failed");
                return;
            }
        };
        let now = r.clock.now();
        let was_out =
            matches!(r.store.connection_state(c).await, Ok(s) if s.passes_out_since.is_some());
        let change = StateChange::Allotment {
            allotted: i64::try_from(allotment.allotted).unwrap_or(i64::MAX),
            assigned: i64::try_from(allotment.assigned).unwrap_or(i64::MAX),
            at: now,
        };
        if let Err(e) = r.store.change_connection_state(c, change).await {
            tracing::warn!(connection = c, error = %e, "saving the Mobile Pass allotment failed");
            return;
        }
        if was_out && allotment.allotted > allotment.assigned {
            tracing::info!(
                connection = c,
                left = allotment.allotted - allotment.assigned,
                "Mobile Passes available again: inviting resumes"
            );
            if r.store.mark_uninvited_due(c, now).await.is_ok() {
                self.wake();
            }
        }
    }

    /// Runs `work` while holding the store's lease `name`, renewed as it runs, so one instance
    /// does it at a time; `None` when another instance holds it (or the lease was lost).
    pub(crate) async fn with_work_lease<T>(
        &self,
        name: &str,
        work: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        let r = &self.reconciler;
        let owner = self.config.owner.as_str();
        let until = || after_now(r.clock.now(), lease_duration(self.config.lease));
        match r
            .store
            .take_work_lease(name, owner, r.clock.now(), until())
            .await
        {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::warn!(lease = name, error = %e, "taking a work lease failed");
                return None;
            }
        }
        let renew = async {
            loop {
                tokio::time::sleep(lease_duration(self.config.lease) / 3).await;
                match r
                    .store
                    .take_work_lease(name, owner, r.clock.now(), until())
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => {
                        tracing::warn!(lease = name, error = %e, "renewing a work lease failed")
                    }
                }
            }
        };
        let out = tokio::select! {
            out = work => Some(out),
            () = renew => {
                tracing::error!(lease = name, "work lease lost to another instance; stopped");
                None
            }
        };
        if let Err(e) = r.store.release_work_lease(name, owner).await {
            tracing::warn!(lease = name, error = %e, "releasing a work lease failed; it will expire");
        }
        out
    }

    /// Reads the directory when it is due and no other instance is reading it.
    async fn directory_if_due(&self, connection: &doorsync_core::Connection, now: Timestamp) {
        let store = &self.reconciler.store;
        let c = connection.id.as_str();
        let retry_due = self
            .directory_retry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(c)
            .map(|(t, _)| *t);
        let due = |state: &doorsync_store::ConnectionState| {
            retry_due.map_or_else(
                || {
                    state.last_directory_at.is_none_or(|t| {
                        now.duration_since(t).as_secs_f64()
                            >= self.config.directory_interval.as_secs_f64()
                    })
                },
                |t| t <= now,
            )
        };
        if !due(&store.connection_state(c).await.unwrap_or_default()) {
            return;
        }
        let read = self
            .with_work_lease(&format!("directory:{c}"), async {
                // Another instance may have read it while this one waited.
                if !due(&store.connection_state(c).await.unwrap_or_default()) {
                    return None;
                }
                Some(drift::sync_directory(&self.reconciler, connection).await)
            })
            .await
            .flatten();
        match read {
            None => {}
            Some(Ok(counts)) => {
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
                // With the directory, the allotment: sync/status shows the passes left.
                self.read_allotment(connection).await;
            }
            Some(Err(e)) => {
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
                retry.insert(c.to_owned(), (after_now(now, wait), n));
            }
        }
    }

    /// A location given a site or a connection (or taken off one) has its door records at once,
    /// from the directory already read, rather than at the next read up to `directory_interval`
    /// later: until then presence would count nobody at its doors and the member app list none.
    /// Read-only unless a door's location, name or presence changed.
    async fn doors_if_locations_changed(&self, connection: &doorsync_core::Connection) {
        let store = &self.reconciler.store;
        let c = connection.id.as_str();
        let Ok(version) = store.catalog_version().await else {
            return;
        };
        let kept = |m: &HashMap<String, i64>| m.get(c) == Some(&version);
        if kept(&self.doors_kept_at.lock().unwrap_or_else(|e| e.into_inner())) {
            return;
        }
        // Before the first read there is nothing to keep, and an empty list would mark every
        // door gone.
        let doors = match store.directory(c, "door").await {
            Ok(doors) if !doors.is_empty() => doors,
            _ => return,
        };
        match drift::sync_doors(&self.reconciler, connection, &doors).await {
            Ok(()) => {
                self.doors_kept_at
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(c.to_owned(), version);
            }
            Err(e) => tracing::warn!(connection = c, error = %e, "keeping the doors failed"),
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

    pub(crate) async fn note_provider_error(
        &self,
        connection: &str,
        e: &ReconcileError,
        now: Timestamp,
    ) {
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
        let store = &self.reconciler.store;
        let c = connection.id.as_str();
        // One audit per connection across every instance, against the one call budget.
        let Some(result) = self
            .with_work_lease(
                &format!("audit:{c}"),
                drift::audit_connection(&self.reconciler, connection),
            )
            .await
        else {
            return Err(ReconcileError::Unsettled {
                connection: c.to_owned(),
                why: "another instance is auditing this connection".into(),
            });
        };
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
        if let Err(e) = self.drift_alert(&report, now).await {
            tracing::warn!(connection = c, error = %e, "alerting drift failed");
        }
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

    /// Signs in to a connection's provider and reads its groups, sites and doors now, enabled or
    /// not (the dashboard's Connect): the provider's refusal comes back to the operator at once.
    pub async fn read_directory(
        &self,
        connection: &doorsync_core::Connection,
    ) -> Result<(usize, usize, usize), ReconcileError> {
        let c = connection.id.as_str();
        let now = self.reconciler.clock.now();
        let counts = drift::sync_directory(&self.reconciler, connection).await?;
        let store = &self.reconciler.store;
        store
            .change_connection_state(c, StateChange::DirectoryRead { at: now })
            .await?;
        // Signed in: a pause for refused credentials is over.
        store
            .change_connection_state(c, StateChange::Resumed { now })
            .await?;
        self.wake();
        Ok(counts)
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
            let read = self
                .with_work_lease(
                    &format!("directory:{c}"),
                    drift::sync_directory(&self.reconciler, connection),
                )
                .await;
            match read {
                None => {
                    let why = "another instance is reading this connection's directory";
                    out.push(Err((c.to_owned(), why.to_owned())));
                    continue;
                }
                Some(Ok(_)) => {
                    let _ = self
                        .reconciler
                        .store
                        .change_connection_state(c, StateChange::DirectoryRead { at: now })
                        .await;
                }
                Some(Err(e)) => {
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
