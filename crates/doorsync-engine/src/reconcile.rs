//! One reconcile: what a subject should hold now, against what the mirror says the provider
//! holds, made equal through the provider, with the mirror and audit log updated after each step.
//! It is not told why it runs, so it must be idempotent: a crash between a provider call and the
//! mirror update is repaired by the next run (membership changes repeat harmlessly; users are
//! found by externalId before any create).

use crate::metrics::Metrics;
use crate::provider::{
    ErrorKind, InvitationState, Provider, ProviderError, ProviderFactory, UserProfile,
};
use doorsync_core::*;
use doorsync_store::{AuditEntry, Fence, Kind, MirrorUser, Record, StateChange, Store, StoreError};
use jiff::Timestamp;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("connection {connection}: {error}")]
    Provider {
        connection: String,
        error: ProviderError,
    },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The connection is paused (the provider is down); come back then.
    #[error("connection {connection} paused until {until}")]
    Paused {
        connection: String,
        until: Timestamp,
    },
    /// The provider kept changing under the reconcile (a user deleted again and again).
    #[error("connection {connection}: the provider did not settle: {why}")]
    Unsettled { connection: String, why: String },
    /// Another instance took the subject over (this one stalled past its lease).
    #[error("the lease on this subject was lost")]
    LeaseLost,
}

impl ReconcileError {
    /// The key errors are counted by in the status.
    pub fn kind(&self) -> &'static str {
        match self {
            ReconcileError::Provider { error, .. } => error.kind.as_str(),
            ReconcileError::Store(StoreError::Fenced(_)) => "lease_lost",
            ReconcileError::Store(_) => "store",
            ReconcileError::Paused { .. } => "paused",
            ReconcileError::Unsettled { .. } => "unsettled",
            ReconcileError::LeaseLost => "lease_lost",
        }
    }

    /// The connection the error came from, if one did.
    pub fn connection(&self) -> Option<&str> {
        match self {
            ReconcileError::Provider { connection, .. }
            | ReconcileError::Paused { connection, .. }
            | ReconcileError::Unsettled { connection, .. } => Some(connection),
            _ => None,
        }
    }

    /// Another claim has taken the subject: the run stops without another write.
    pub fn lost_lease(&self) -> bool {
        matches!(
            self,
            ReconcileError::LeaseLost | ReconcileError::Store(StoreError::Fenced(_))
        )
    }

    pub fn provider_error(&self) -> Option<&ProviderError> {
        match self {
            ReconcileError::Provider { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// What decides a subject's access, grouped by the connection that serves each entitlement.
pub struct SubjectView {
    pub entitlements: Vec<Entitlement>,
    pub by_connection: BTreeMap<Id, Vec<Entitlement>>,
    pub name: Option<String>,
    pub email: Option<String>,
}

/// Wraps a provider error with the connection it came from.
pub(crate) fn on(connection: &str) -> impl Fn(ProviderError) -> ReconcileError + '_ {
    move |error| ReconcileError::Provider {
        connection: connection.to_owned(),
        error,
    }
}

fn connection_of_cause(cause: &Cause, catalog: &Catalog) -> Option<Id> {
    let location = match cause {
        Cause::Booking { resource_id, .. } => &catalog.resources.get(resource_id)?.location_id,
        Cause::PassGrant { pass_id, .. } => &catalog.passes.get(pass_id)?.location_id,
        Cause::Contract { desk_id, .. } | Cause::TeamContract { desk_id, .. } => {
            &catalog.desks.get(desk_id)?.location_id
        }
        Cause::Visitor { .. } => return None,
    };
    catalog.locations.get(location)?.connection_id.clone()
}

pub async fn load_subject(
    store: &dyn Store,
    subject: &Subject,
    now: Timestamp,
) -> Result<SubjectView, StoreError> {
    let mut view = SubjectView {
        entitlements: vec![],
        by_connection: BTreeMap::new(),
        name: None,
        email: None,
    };
    match subject {
        Subject::Customer(id) => {
            if let Some(inputs) = store.customer_inputs(id, now).await? {
                view.entitlements = customer_entitlements(&inputs);
                for e in &view.entitlements {
                    if let Some(c) = connection_of_cause(&e.cause, &inputs.catalog) {
                        view.by_connection.entry(c).or_default().push(e.clone());
                    }
                }
                view.name = Some(inputs.customer.name.clone());
                view.email = Some(inputs.customer.email.as_str().to_owned());
            }
        }
        Subject::Visitor(id) => {
            if let Some(inputs) = store.visitor_inputs(id).await? {
                view.entitlements = visitor_entitlements(&inputs);
                if let Some(c) = &inputs.location.connection_id {
                    view.by_connection
                        .insert(c.clone(), view.entitlements.clone());
                }
                view.name = Some(inputs.visitor.name.clone());
                view.email = Some(inputs.visitor.email.as_str().to_owned());
            }
        }
    }
    Ok(view)
}

/// A short, stable name for a cause in the audit log.
pub fn cause_label(cause: &Cause) -> String {
    match cause {
        Cause::Booking { booking_id, .. } => format!("booking:{booking_id}"),
        Cause::PassGrant { pass_grant_id, .. } => format!("pass_grant:{pass_grant_id}"),
        Cause::Contract { contract_id, .. } => format!("contract:{contract_id}"),
        Cause::TeamContract {
            contract_id,
            team_id,
            ..
        } => format!("contract:{contract_id} via team:{team_id}"),
        Cause::Visitor { visitor_id } => format!("visitor:{visitor_id}"),
    }
}

/// Why a group is added (the entitlement holding now) or removed (the last one that ended).
fn cause_for(group: &str, ents: &[Entitlement], now: Timestamp, adding: bool) -> String {
    let of_group = ents.iter().filter(|e| e.group_id == group);
    if adding {
        of_group
            .filter(|e| e.holds_at(now))
            .map(|e| cause_label(&e.cause))
            .next()
            .unwrap_or_default()
    } else {
        of_group
            .filter(|e| e.until.is_some_and(|u| u <= now))
            .max_by_key(|e| e.until)
            .map(|e| format!("ended {}", cause_label(&e.cause)))
            .unwrap_or_else(|| "no entitlement".into())
    }
}

pub struct Reconciler {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub providers: Arc<dyn ProviderFactory>,
    pub metrics: Arc<Metrics>,
    /// See [`crate::EngineConfig::invitation_resend`].
    pub invitation_resend: std::time::Duration,
}

/// A subject's next transition, and whether it takes access away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Next {
    pub at: Timestamp,
    pub revokes: bool,
}

/// The memberships a subject's user holds past its entitlement (or `None` when it holds none).
fn held_past_entitlement(
    mirror: Option<&MirrorUser>,
    want: &BTreeSet<String>,
    policy: &Policy,
) -> BTreeSet<String> {
    let Some(m) = mirror else {
        return BTreeSet::new();
    };
    if policy.exempt_user_ids.contains(&m.user_id) {
        return BTreeSet::new();
    }
    m.groups
        .iter()
        .filter(|g| policy.managed_groups.contains(*g) && !want.contains(*g))
        .cloned()
        .collect()
}

impl Reconciler {
    /// Brings the subject's provider users in line on every connection; returns when to run
    /// again. Each connection is handled on its own: one that is down or failing does not hold
    /// back the others, and the first error is reported once all have been tried.
    /// `drift`: when a drift audit flagged the subject, whose users are then read back from the
    /// provider first (the flag is cleared once they have been).
    pub async fn reconcile(
        &self,
        fence: &Fence,
        drift: Option<Timestamp>,
    ) -> Result<Option<Next>, ReconcileError> {
        let subject = &fence.subject;
        let now = self.clock.now();
        let view = load_subject(self.store.as_ref(), subject, now).await?;
        let mut connections: BTreeSet<String> =
            view.by_connection.keys().map(|c| c.to_string()).collect();
        connections.extend(self.store.mirror_connections_of(subject).await?);
        if drift.is_some() {
            // The audit may have found a user for a subject that has none in the mirror, on any
            // connection.
            for r in self.store.list(Kind::Connection, None, 500).await? {
                connections.insert(r.key());
            }
        }
        let mut first_error = None;
        for c in connections {
            let Some(Record::Connection(connection)) = self.store.get(Kind::Connection, &c).await?
            else {
                continue;
            };
            let ents = view
                .by_connection
                .get(&connection.id)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            if !connection.enabled {
                // Nothing is changed on a disabled connection, but what it keeps past its end
                // is written down, so the status can show it.
                let mirror = self.store.mirror_user(&c, subject).await?;
                let policy = self.policy(&connection, mirror.as_ref()).await?;
                let held = held_past_entitlement(mirror.as_ref(), &desired(ents, now), &policy);
                self.store.set_held_past(fence, &c, &held, now).await?;
                continue;
            }
            let state = self.store.connection_state(&c).await?;
            let result = match state.paused_until {
                Some(until) if until > now => Err(ReconcileError::Paused {
                    connection: c.clone(),
                    until,
                }),
                // The pause has run out but its probe has not answered yet: one call finds out
                // whether the provider is back, not every worker at once.
                Some(_) => Err(ReconcileError::Paused {
                    connection: c.clone(),
                    until: now + jiff::SignedDuration::from_secs(1),
                }),
                None => match self.providers.provider(&connection) {
                    Ok(provider) => {
                        self.on_connection(
                            &connection,
                            provider.as_ref(),
                            fence,
                            &view,
                            ents,
                            drift.is_some(),
                            now,
                        )
                        .await
                    }
                    Err(e) => Err(on(&c)(e)),
                },
            };
            match result {
                Ok(()) => {
                    if state.pauses > 0 {
                        // The provider answers again: its next outage starts the backoff afresh.
                        self.store
                            .change_connection_state(
                                &c,
                                doorsync_store::StateChange::Resumed { now },
                            )
                            .await?;
                    }
                }
                Err(e @ ReconcileError::Store(_)) => return Err(e),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => {
                if let Some(at) = drift {
                    self.store.clear_drift(fence, at).await?;
                }
                Ok(next_transition(&view.entitlements, now).map(|at| Next {
                    at,
                    revokes: revokes_at(&view.entitlements, at),
                }))
            }
        }
    }

    /// The connection's policy for one user: the groups doorsync manages, and the groups it
    /// once added the user to, so that a group no link controls any more is still emptied of
    /// the people doorsync put there.
    async fn policy(
        &self,
        connection: &Connection,
        mirror: Option<&MirrorUser>,
    ) -> Result<Policy, ReconcileError> {
        let mut managed_groups = self.store.managed_groups(connection.id.as_str()).await?;
        if let Some(m) = mirror {
            managed_groups.extend(m.added.iter().cloned());
        }
        Ok(Policy {
            no_access: connection.no_access_policy,
            exempt_user_ids: connection.exempt_user_ids.iter().cloned().collect(),
            managed_groups,
        })
    }

    /// Reads the subject's user back from the provider after the drift audit found it other
    /// than the mirror has it: the groups it holds, or that it is gone, or (with no user in the
    /// mirror) a user carrying the subject's externalId to adopt.
    async fn read_back(
        &self,
        c: &str,
        provider: &dyn Provider,
        fence: &Fence,
        mirror: Option<MirrorUser>,
    ) -> Result<Option<MirrorUser>, ReconcileError> {
        let subject = &fence.subject;
        let read = match mirror {
            Some(mut m) => match provider.user_groups(&m.user_id).await {
                Ok(groups) => {
                    m.added.retain(|g| groups.contains(g));
                    m.groups = groups;
                    Some(m)
                }
                Err(e) if e.kind == ErrorKind::NotFound => None,
                Err(e) => return Err(on(c)(e)),
            },
            None => match provider
                .find_user_by_external_id(&subject.external_id())
                .await
                .map_err(on(c))?
            {
                Some(u) if self.store.mirror_subject_of_user(c, &u.id).await?.is_none() => {
                    let groups = provider.user_groups(&u.id).await.map_err(on(c))?;
                    let mut m = MirrorUser::found(u.id, u.suspended, groups);
                    m.external_id = Some(subject.external_id());
                    Some(m)
                }
                _ => None,
            },
        };
        let detail = match &read {
            Some(m) => format!("provider user {} holds {:?}", m.user_id, m.groups),
            None => "no provider user".to_owned(),
        };
        let entry = self.entry(
            &subject.key(),
            None,
            "read_back",
            Some("drift".into()),
            "ok",
            0,
            Some(detail),
        );
        self.store
            .mirror_save(fence, c, read.as_ref(), &[entry])
            .await?;
        Ok(read)
    }

    #[allow(clippy::too_many_arguments)]
    async fn on_connection(
        &self,
        connection: &Connection,
        provider: &dyn Provider,
        fence: &Fence,
        view: &SubjectView,
        ents: &[Entitlement],
        drift: bool,
        now: Timestamp,
    ) -> Result<(), ReconcileError> {
        let subject = &fence.subject;
        let c = connection.id.as_str();
        let want = desired(ents, now);
        let mut mirror = self.store.mirror_user(c, subject).await?;
        if drift {
            mirror = self.read_back(c, provider, fence, mirror).await?;
        }
        let external_id = subject.external_id();
        // Link or create, then apply; a user deleted by hand meanwhile costs another round.
        for _round in 0..4 {
            let policy = self.policy(connection, mirror.as_ref()).await?;
            if mirror
                .as_ref()
                .is_some_and(|m| policy.exempt_user_ids.contains(&m.user_id))
            {
                // Staff and the like: never touched, not even their name.
                return Ok(());
            }
            let actual = mirror.as_ref().map(|m| ProviderUser {
                id: m.user_id.clone(),
                external_id: Some(external_id.clone()),
                suspended: m.suspended,
                groups: m.groups.clone(),
            });
            let plan = diff(&want, actual.as_ref(), &policy);
            if plan.ops.first() == Some(&Op::CreateUser) {
                mirror = Some(self.ensure_user(connection, provider, fence, view).await?);
                continue;
            }
            let mut result = Ok(());
            if let Some(m) = mirror.as_mut()
                && !plan.ops.contains(&Op::DeleteUser)
            {
                result = self.push_profile(c, provider, fence, view, m).await;
            }
            if result.is_ok() {
                result = self
                    .apply(c, provider, fence, &mut mirror, &plan, ents, now)
                    .await;
            }
            match result {
                Err(ReconcileError::Provider { error, .. })
                    if error.kind == ErrorKind::NotFound =>
                {
                    // A 404 names the user or the group, and Brivo's messages are not to be
                    // matched on: ask whether the user is still there.
                    let still = provider
                        .find_user_by_external_id(&external_id)
                        .await
                        .map_err(on(c))?;
                    if let (Some(u), Some(m)) = (&still, &mirror)
                        && u.id == m.user_id
                    {
                        let why = format!(
                            "a group is missing in the provider (was it deleted?): {}",
                            error.message
                        );
                        return Err(on(c)(ProviderError::new(ErrorKind::Rejected, why)));
                    }
                    // The user was deleted behind our back: forget it and start over.
                    let entry = self.entry(
                        &subject.key(),
                        None,
                        "forget_user",
                        None,
                        "ok",
                        0,
                        Some(error.message),
                    );
                    self.store.mirror_save(fence, c, None, &[entry]).await?;
                    mirror = None;
                    continue;
                }
                other => other?,
            }
            if let Some(m) = mirror.as_mut() {
                self.invite_once(c, provider, fence, view, m, &policy.managed_groups, now)
                    .await?;
            }
            if !self.store.held_past(Some(subject), 1).await?.is_empty() {
                self.store
                    .set_held_past(fence, c, &BTreeSet::new(), now)
                    .await?;
            }
            return Ok(());
        }
        Err(ReconcileError::Unsettled {
            connection: c.to_owned(),
            why: "the user kept disappearing".into(),
        })
    }

    /// A subject's first access brings a Mobile Pass invitation, sent again when it expired
    /// unredeemed (read back at most once per `invitation_resend`) or when an operator asks.
    /// A failure is logged and tried again later; it never holds up access, and an account
    /// with no passes left is not asked again until its allotment grows.
    #[allow(clippy::too_many_arguments)]
    async fn invite_once(
        &self,
        c: &str,
        provider: &dyn Provider,
        fence: &Fence,
        view: &SubjectView,
        m: &mut MirrorUser,
        managed: &BTreeSet<String>,
        now: Timestamp,
    ) -> Result<(), ReconcileError> {
        let subject = &fence.subject;
        let has_access = m.groups.iter().any(|g| managed.contains(g));
        let (true, Some(email)) = (has_access, &view.email) else {
            return Ok(());
        };
        let requested = self.store.invitation_requested(subject).await?;
        let looked_at = m.invitation_checked_at.or(m.invited_at);
        let recheck = m.invited_at.is_some()
            && m.invitation.as_deref() != Some("redeemed")
            && looked_at.is_some_and(|t| {
                now.duration_since(t).as_secs_f64() >= self.invitation_resend.as_secs_f64()
            });
        if m.invited_at.is_some() && requested.is_none() && !recheck {
            return Ok(());
        }
        if self
            .store
            .connection_state(c)
            .await?
            .passes_out_since
            .is_some()
        {
            return Ok(());
        }
        let t = std::time::Instant::now();
        if requested.is_none() && m.invited_at.is_some() {
            let state = match provider.invitation_state(&m.user_id).await {
                Ok(s) => s,
                Err(e) if e.kind.pauses_connection() => return Err(on(c)(e)),
                Err(e) => {
                    tracing::warn!(subject = %subject, error = %e, "reading the Mobile Pass invitation failed");
                    return Ok(());
                }
            };
            m.invitation = Some(state.as_str().to_owned());
            m.invitation_checked_at = Some(now);
            if state != InvitationState::Lapsed {
                self.store.mirror_save(fence, c, Some(m), &[]).await?;
                return Ok(());
            }
        }
        if requested.is_some() {
            // Brivo keeps one pending invitation per user: the old one goes first.
            if let Err(e) = provider.cancel_invitation(&m.user_id).await {
                if e.kind.pauses_connection() {
                    return Err(on(c)(e));
                }
                tracing::warn!(subject = %subject, error = %e, "cancelling the old invitation failed");
            }
        }
        let (outcome, detail) = match provider.invite(&m.user_id, email).await {
            Ok(()) => {
                m.invited_at = Some(now);
                m.invitation = Some(InvitationState::Pending.as_str().to_owned());
                m.invitation_checked_at = Some(now);
                if let Some(at) = requested {
                    self.store.clear_invitation_request(fence, at).await?;
                }
                (
                    "ok".to_owned(),
                    requested.map(|_| "asked for by an operator".to_owned()),
                )
            }
            Err(e) if e.kind == ErrorKind::NoPassesLeft => {
                tracing::warn!(connection = c, error = %e, "no Mobile Passes left: invitations stop until the allotment grows");
                self.store
                    .change_connection_state(c, StateChange::PassesOut { now })
                    .await?;
                (e.kind.as_str().to_owned(), Some(e.message))
            }
            Err(e) if e.kind.pauses_connection() => return Err(on(c)(e)),
            Err(e) => {
                tracing::warn!(subject = %subject, error = %e, "Mobile Pass invitation failed; will try again");
                (format!("error: {e}"), None)
            }
        };
        let entry = self.entry(
            &subject.key(),
            None,
            "invite_mobile_pass",
            None,
            &outcome,
            elapsed(t),
            detail,
        );
        self.store.mirror_save(fence, c, Some(m), &[entry]).await?;
        Ok(())
    }

    async fn ensure_user(
        &self,
        connection: &Connection,
        provider: &dyn Provider,
        fence: &Fence,
        view: &SubjectView,
    ) -> Result<MirrorUser, ReconcileError> {
        let subject = &fence.subject;
        let c = connection.id.as_str();
        let profile = UserProfile::new(
            subject.external_id(),
            view.name.as_deref().unwrap_or("doorsync user"),
            view.email.clone(),
        );
        let t = std::time::Instant::now();
        let mut found = provider
            .find_user_by_external_id(&profile.external_id)
            .await
            .map_err(on(c))?;
        if let Some(u) = &found
            && let Some(other) = self.store.mirror_subject_of_user(c, &u.id).await?
            && &other != subject
        {
            // A user made before ids were made one-to-one, still carrying the id another
            // subject's now maps to: that subject's next reconcile gives it its own id.
            self.store.mark_due(&other, self.clock.now()).await?;
            return Err(ReconcileError::Unsettled {
                connection: c.to_owned(),
                why: format!(
                    "provider user {} still carries this externalId for {other}; it is being moved",
                    u.id
                ),
            });
        }
        let mut how = "link_user";
        // Only customers are linked by e-mail (a visitor may share a member's address), and only
        // to a user no one else has claimed.
        if found.is_none()
            && connection.link_users_by_email
            && matches!(subject, Subject::Customer(_))
            && let Some(email) = &profile.email
        {
            found = provider
                .find_user_by_email(email, &profile.last_name)
                .await
                .map_err(on(c))?
                .filter(|u| {
                    u.external_id
                        .as_deref()
                        .is_none_or(|e| e == profile.external_id)
                });
            how = "link_user_by_email";
        }
        let user = match found {
            Some(u) => {
                let groups = provider.user_groups(&u.id).await.map_err(on(c))?;
                let mut m = MirrorUser::found(u.id, u.suspended, groups);
                // Pushed on the next step if the user carries another.
                m.external_id = u.external_id;
                m
            }
            None => {
                how = "create_user";
                let u = provider.create_user(&profile).await.map_err(on(c))?;
                let mut m = MirrorUser::found(u.id, u.suspended, BTreeSet::new());
                m.name = view.name.clone();
                m.email = view.email.clone();
                m.external_id = Some(profile.external_id.clone());
                m
            }
        };
        let detail = Some(format!("provider user {}", user.user_id));
        let entry = self.entry(&subject.key(), None, how, None, "ok", elapsed(t), detail);
        self.store
            .mirror_save(fence, c, Some(&user), &[entry])
            .await?;
        Ok(user)
    }

    /// Runs the plan one membership change at a time: a change that fails is recorded and
    /// retried later, and does not hold back the others (removals come first in a plan). Only
    /// a provider that is down, or a user that is gone, stops the run at once.
    #[allow(clippy::too_many_arguments)]
    async fn apply(
        &self,
        c: &str,
        provider: &dyn Provider,
        fence: &Fence,
        mirror: &mut Option<MirrorUser>,
        plan: &Plan,
        ents: &[Entitlement],
        now: Timestamp,
    ) -> Result<(), ReconcileError> {
        let subject = &fence.subject;
        let mut first_error: Option<ProviderError> = None;
        for op in &plan.ops {
            let Some(m) = mirror.as_mut() else { break };
            let t = std::time::Instant::now();
            let (r, entry) = match op {
                Op::CreateUser => continue,
                Op::AddToGroup(g) => {
                    let r = provider.add_to_group(g, &m.user_id).await;
                    let entry = self.outcome(
                        subject,
                        Some(g),
                        "add_to_group",
                        cause_for(g, ents, now, true),
                        &r,
                        t,
                    );
                    if r.is_ok() {
                        m.groups.insert(g.clone());
                        m.added.insert(g.clone());
                        self.metrics.count_change("add_to_group");
                    }
                    (r, entry)
                }
                Op::RemoveFromGroup(g) => {
                    let r = match provider.remove_from_group(g, &m.user_id).await {
                        // A 404 is not proof the membership is gone: read it back.
                        Err(e) if e.kind == ErrorKind::NotFound => {
                            match provider.user_groups(&m.user_id).await {
                                Ok(groups) if groups.contains(g) => Err(ProviderError::new(
                                    ErrorKind::Rejected,
                                    format!(
                                        "the provider answered 404 to the removal but still lists the user in group {g}: {}",
                                        e.message
                                    ),
                                )),
                                Ok(_) => Ok(()),
                                Err(read) => Err(read),
                            }
                        }
                        r => r,
                    };
                    let entry = self.outcome(
                        subject,
                        Some(g),
                        "remove_from_group",
                        cause_for(g, ents, now, false),
                        &r,
                        t,
                    );
                    if r.is_ok() {
                        m.groups.remove(g);
                        m.added.remove(g);
                        self.metrics.count_change("remove_from_group");
                    }
                    (r, entry)
                }
                Op::Suspend | Op::Reinstate => {
                    let suspend = *op == Op::Suspend;
                    let name = if suspend {
                        "suspend_user"
                    } else {
                        "reinstate_user"
                    };
                    let r = provider.set_suspended(&m.user_id, suspend).await;
                    let entry = self.outcome(subject, None, name, String::new(), &r, t);
                    if r.is_ok() {
                        m.suspended = suspend;
                        self.metrics.count_change(name);
                    }
                    (r, entry)
                }
                Op::DeleteUser => {
                    let r = match provider.delete_user(&m.user_id).await {
                        // Gone is what a deletion wants, once the provider no longer finds it.
                        Err(e) if e.kind == ErrorKind::NotFound => {
                            match provider
                                .find_user_by_external_id(&subject.external_id())
                                .await
                            {
                                Ok(Some(u)) if u.id == m.user_id => Err(ProviderError::new(
                                    ErrorKind::Rejected,
                                    format!(
                                        "the provider answered 404 to the deletion but still has user {}",
                                        u.id
                                    ),
                                )),
                                Ok(_) => Ok(()),
                                Err(read) => Err(read),
                            }
                        }
                        r => r,
                    };
                    let entry = self.outcome(subject, None, "delete_user", String::new(), &r, t);
                    if let Err(e) = r {
                        self.store.append_run_audit(fence, &[entry]).await?;
                        return Err(on(c)(e));
                    }
                    self.store.mirror_save(fence, c, None, &[entry]).await?;
                    self.metrics.count_change("delete_user");
                    *mirror = None;
                    break;
                }
            };
            // The change and its audit entry are one write; a failed call leaves its entry.
            if r.is_ok() {
                self.store
                    .mirror_save(fence, c, mirror.as_ref(), &[entry])
                    .await?;
            } else {
                self.store.append_run_audit(fence, &[entry]).await?;
            }
            match r {
                Ok(()) => {}
                Err(e) if e.kind.pauses_connection() => return Err(on(c)(e)),
                Err(e) if e.kind == ErrorKind::NotFound && first_error.is_none() => {
                    // The user may be gone; the caller finds out.
                    first_error = Some(e);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(on(c)(e)),
            None => Ok(()),
        }
    }

    /// Pushes a changed name or e-mail. Brivo refusing one (an address it rejects, say) is
    /// logged and tried again later; it must not hold up access changes. Only a user that is
    /// gone is an error, so the caller can start over.
    async fn push_profile(
        &self,
        c: &str,
        provider: &dyn Provider,
        fence: &Fence,
        view: &SubjectView,
        m: &mut MirrorUser,
    ) -> Result<(), ReconcileError> {
        let subject = &fence.subject;
        let Some(name) = &view.name else {
            return Ok(());
        };
        let external_id = subject.external_id();
        let pushed_id = m
            .external_id
            .clone()
            .unwrap_or_else(|| subject.legacy_external_id());
        if m.name.as_ref() == Some(name) && m.email == view.email && pushed_id == external_id {
            return Ok(());
        }
        let t = std::time::Instant::now();
        let profile = UserProfile::new(external_id.clone(), name, view.email.clone());
        let r = provider.update_user(&m.user_id, &profile).await;
        let entry = self.outcome(subject, None, "update_user", String::new(), &r, t);
        if r.is_err() {
            self.store
                .append_run_audit(fence, std::slice::from_ref(&entry))
                .await?;
        }
        match r {
            Ok(()) => {
                m.name = Some(name.clone());
                m.email = view.email.clone();
                m.external_id = Some(external_id);
                self.store.mirror_save(fence, c, Some(m), &[entry]).await?;
                Ok(())
            }
            Err(e) if e.kind == ErrorKind::NotFound => Err(on(c)(e)),
            Err(e) if e.kind.pauses_connection() => Err(on(c)(e)),
            Err(e) => {
                tracing::warn!(subject = %subject, error = %e, "updating the provider user's profile failed");
                Ok(())
            }
        }
    }

    fn outcome(
        &self,
        subject: &Subject,
        group: Option<&String>,
        operation: &str,
        cause: String,
        result: &Result<(), ProviderError>,
        started: std::time::Instant,
    ) -> AuditEntry {
        let outcome = match result {
            Ok(()) => "ok".to_owned(),
            Err(e) => format!("error: {e}"),
        };
        let cause = (!cause.is_empty()).then_some(cause);
        self.entry(
            &subject.key(),
            group.map(String::as_str),
            operation,
            cause,
            &outcome,
            elapsed(started),
            None,
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn entry(
        &self,
        subject: &str,
        group: Option<&str>,
        operation: &str,
        cause: Option<String>,
        outcome: &str,
        latency_ms: i64,
        detail: Option<String>,
    ) -> AuditEntry {
        AuditEntry {
            seq: 0,
            at: self.clock.now(),
            subject: subject.to_owned(),
            group_id: group.map(str::to_owned),
            operation: operation.to_owned(),
            cause,
            outcome: outcome.to_owned(),
            latency_ms: Some(latency_ms),
            detail,
        }
    }

    /// An entry outside any subject's reconcile (the drift audit's findings).
    pub(crate) async fn audit(&self, entry: AuditEntry) {
        if let Err(e) = self.store.append_audit(entry).await {
            tracing::error!(error = %e, "audit log write failed");
        }
    }
}

fn elapsed(t: std::time::Instant) -> i64 {
    t.elapsed().as_millis().min(i64::MAX as u128) as i64
}
