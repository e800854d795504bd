//! The whole emulated account in one value: what the API reads and writes, kept behind one mutex
//! and persisted as JSON. Membership and user changes go through methods here so that the
//! histories cannot miss one.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::Path;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::Account;
use crate::model::*;

/// Events kept for listing; older ones are dropped so a long benchmark cannot grow memory
/// without bound.
pub const MAX_EVENTS: usize = 100_000;

/// Brivo's documented limit of groups per user.
pub const MAX_GROUPS_PER_USER: usize = 16;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountInfo {
    pub credentials: Account,
    /// The account's numeric id, shown in events as `accountId`.
    pub account_id: u64,
    /// The administrator's numeric id and name, shown as the actor of a remote unlock.
    pub admin_user_id: u64,
    pub admin_name: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tokens {
    pub access: HashMap<String, AccessToken>,
    pub refresh: HashMap<String, RefreshToken>,
    pub codes: HashMap<String, AuthCode>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub account: AccountInfo,
    pub next_id: u64,
    pub users: BTreeMap<u64, User>,
    pub groups: BTreeMap<u64, Group>,
    /// (group id, user id)
    pub memberships: BTreeSet<(u64, u64)>,
    pub sites: BTreeMap<u64, Site>,
    pub panels: BTreeMap<u64, ControlPanel>,
    pub access_points: BTreeMap<u64, AccessPoint>,
    /// (group id, access point id) → the permission: which groups open which doors, and when.
    #[serde(with = "permissions")]
    pub group_doors: BTreeMap<(u64, u64), Permission>,
    /// Schedules group permissions refer to. Absent from state files written before they were
    /// emulated; [`State::reindex`] seeds them then.
    #[serde(default)]
    pub schedules: BTreeMap<u64, Schedule>,
    pub credentials: BTreeMap<u64, Credential>,
    pub invitations: BTreeMap<u64, Invitation>,
    pub events: VecDeque<Event>,
    pub subscriptions: BTreeMap<u64, Subscription>,
    pub membership_history: Vec<MembershipChange>,
    pub user_history: Vec<UserChange>,
    pub outbox: Vec<OutboxMail>,
    pub tokens: Tokens,
    /// Rebuilt from `memberships` on load: (user id, group id).
    #[serde(skip)]
    pub user_groups: BTreeSet<(u64, u64)>,
    /// Rebuilt from `users` on load.
    #[serde(skip)]
    pub by_external_id: HashMap<String, u64>,
}

impl State {
    pub fn new(account: AccountInfo, first_id: u64) -> Self {
        Self {
            account,
            next_id: first_id,
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            memberships: BTreeSet::new(),
            sites: BTreeMap::new(),
            panels: BTreeMap::new(),
            access_points: BTreeMap::new(),
            group_doors: BTreeMap::new(),
            schedules: BTreeMap::new(),
            credentials: BTreeMap::new(),
            invitations: BTreeMap::new(),
            events: VecDeque::new(),
            subscriptions: BTreeMap::new(),
            membership_history: Vec::new(),
            user_history: Vec::new(),
            outbox: Vec::new(),
            tokens: Tokens::default(),
            user_groups: BTreeSet::new(),
            by_external_id: HashMap::new(),
        }
    }

    pub fn load(path: &Path) -> anyhow::Result<Option<Self>> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", path.display())),
        };
        let mut state: State = serde_json::from_slice(&text)
            .map_err(|e| anyhow::anyhow!("parsing {}: {e}", path.display()))?;
        state.reindex();
        Ok(Some(state))
    }

    /// Writes to a temporary file beside the target and renames it over, so a crash mid-write
    /// never leaves a truncated state file.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec(self)?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    pub fn reindex(&mut self) {
        if self.schedules.is_empty() {
            crate::seed::add_schedules(self);
        }
        self.user_groups = self.memberships.iter().map(|&(g, u)| (u, g)).collect();
        self.by_external_id = self
            .users
            .values()
            .filter_map(|u| u.external_id.clone().map(|e| (e, u.id)))
            .collect();
    }

    pub fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub fn groups_of_user(&self, user_id: u64) -> Vec<u64> {
        self.user_groups
            .range((user_id, 0)..=(user_id, u64::MAX))
            .map(|&(_, g)| g)
            .collect()
    }

    pub fn users_of_group(&self, group_id: u64) -> Vec<u64> {
        self.memberships
            .range((group_id, 0)..=(group_id, u64::MAX))
            .map(|&(_, u)| u)
            .collect()
    }

    pub fn doors_of_group(&self, group_id: u64) -> Vec<u64> {
        self.group_doors
            .range((group_id, 0)..=(group_id, u64::MAX))
            .map(|(&(_, d), _)| d)
            .collect()
    }

    /// The groups with a permission on the door, in id order.
    pub fn groups_of_door(&self, access_point_id: u64) -> Vec<u64> {
        self.group_doors
            .keys()
            .filter(|&&(_, d)| d == access_point_id)
            .map(|&(g, _)| g)
            .collect()
    }

    /// Adds a membership; records it in the history only when it is new.
    pub fn add_membership(&mut self, group_id: u64, user_id: u64, at: Timestamp) -> bool {
        if !self.memberships.insert((group_id, user_id)) {
            return false;
        }
        self.user_groups.insert((user_id, group_id));
        self.record_membership(group_id, user_id, at, MembershipOp::Add);
        true
    }

    /// Removes a membership; records it in the history only when it existed.
    pub fn remove_membership(&mut self, group_id: u64, user_id: u64, at: Timestamp) -> bool {
        if !self.memberships.remove(&(group_id, user_id)) {
            return false;
        }
        self.user_groups.remove(&(user_id, group_id));
        self.record_membership(group_id, user_id, at, MembershipOp::Remove);
        true
    }

    fn record_membership(&mut self, group_id: u64, user_id: u64, at: Timestamp, op: MembershipOp) {
        let external_id = self.users.get(&user_id).and_then(|u| u.external_id.clone());
        self.membership_history.push(MembershipChange {
            at,
            group_id,
            user_id,
            external_id,
            op,
        });
    }

    pub fn record_user(&mut self, user_id: u64, at: Timestamp, op: UserChangeOp) {
        let external_id = self.users.get(&user_id).and_then(|u| u.external_id.clone());
        self.user_history.push(UserChange {
            at,
            user_id,
            external_id,
            op,
        });
    }

    pub fn insert_user(&mut self, user: User) {
        if let Some(ext) = &user.external_id {
            self.by_external_id.insert(ext.clone(), user.id);
        }
        let id = user.id;
        let suspended = user.suspended;
        let at = user.created;
        self.users.insert(id, user);
        self.record_user(id, at, UserChangeOp::Create);
        if suspended {
            self.record_user(id, at, UserChangeOp::Suspend);
        }
    }

    /// Replaces a stored user, keeping the externalId index in step.
    pub fn replace_user(&mut self, user: User) {
        if let Some(old) = self.users.get(&user.id)
            && let Some(ext) = &old.external_id
        {
            self.by_external_id.remove(ext);
        }
        if let Some(ext) = &user.external_id {
            self.by_external_id.insert(ext.clone(), user.id);
        }
        self.users.insert(user.id, user);
    }

    pub fn set_suspended(&mut self, user_id: u64, suspended: bool, at: Timestamp) {
        let Some(user) = self.users.get_mut(&user_id) else {
            return;
        };
        if user.suspended == suspended {
            return;
        }
        user.suspended = suspended;
        user.updated = at;
        let op = if suspended {
            UserChangeOp::Suspend
        } else {
            UserChangeOp::Reinstate
        };
        self.record_user(user_id, at, op);
    }

    /// Deletes a user, ending (and recording) every membership it held and dropping its
    /// credentials and invitations.
    pub fn delete_user(&mut self, user_id: u64, at: Timestamp) -> bool {
        if !self.users.contains_key(&user_id) {
            return false;
        }
        for group_id in self.groups_of_user(user_id) {
            self.remove_membership(group_id, user_id, at);
        }
        self.record_user(user_id, at, UserChangeOp::Delete);
        if let Some(user) = self.users.remove(&user_id)
            && let Some(ext) = user.external_id
        {
            self.by_external_id.remove(&ext);
        }
        self.credentials.retain(|_, c| c.user_id != user_id);
        self.invitations.retain(|_, i| i.user_id != user_id);
        true
    }

    /// Deletes a group, ending (and recording) every membership in it.
    pub fn delete_group(&mut self, group_id: u64, at: Timestamp) -> bool {
        if !self.groups.contains_key(&group_id) {
            return false;
        }
        for user_id in self.users_of_group(group_id) {
            self.remove_membership(group_id, user_id, at);
        }
        for door in self.doors_of_group(group_id) {
            self.group_doors.remove(&(group_id, door));
        }
        self.groups.remove(&group_id);
        true
    }

    /// Appends an event, making its `occurred` strictly later than the previous event's so that
    /// time-offset paging ("strictly older than the last one read") never skips an event.
    pub fn push_event(&mut self, mut event: Event) -> Event {
        if let Some(last) = self.events.back()
            && event.occurred <= last.occurred
        {
            let bumped = last.occurred.as_millisecond() + 1;
            event.occurred = Timestamp::from_millisecond(bumped).unwrap_or(event.occurred);
            if event.processed < event.occurred {
                event.processed = event.occurred;
            }
        }
        self.events.push_back(event.clone());
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
        event
    }

    /// Inserts an event in `occurred` order, for events placed in the past; one that is not
    /// older than the newest goes through [`State::push_event`]. Its `occurred` is moved on by
    /// a millisecond at a time until no other event has the same instant.
    pub fn insert_event(&mut self, mut event: Event) -> Event {
        if self
            .events
            .back()
            .is_none_or(|last| event.occurred > last.occurred)
        {
            return self.push_event(event);
        }
        loop {
            let at = self.events.partition_point(|e| e.occurred < event.occurred);
            let taken = self
                .events
                .get(at)
                .is_some_and(|e| e.occurred == event.occurred);
            if !taken {
                self.events.insert(at, event.clone());
                break;
            }
            let bumped = event.occurred.as_millisecond() + 1;
            event.occurred = Timestamp::from_millisecond(bumped).unwrap_or(event.occurred);
        }
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
        event
    }

    /// Marks pending invitations past their expiration as expired.
    pub fn expire_invitations(&mut self, now: Timestamp) {
        for inv in self.invitations.values_mut() {
            if inv.status == InvitationStatus::Pending && inv.expiration <= now {
                inv.status = InvitationStatus::Expired;
            }
        }
    }

    pub fn site_name(&self, site_id: u64) -> String {
        self.sites
            .get(&site_id)
            .map(|s| s.site_name.clone())
            .unwrap_or_default()
    }
}

/// Group permissions in the state file: a list of
/// `{group_id, access_point_id, schedule_id, privacy_mode_override}`. Files written before
/// permissions had a schedule hold `[group_id, access_point_id]` pairs; those read as the
/// always-on schedule.
mod permissions {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::model::Permission;

    #[derive(Serialize, Deserialize)]
    struct Entry {
        group_id: u64,
        access_point_id: u64,
        #[serde(flatten)]
        permission: Permission,
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Entry(Entry),
        Pair(u64, u64),
    }

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<(u64, u64), Permission>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            map.iter()
                .map(|(&(group_id, access_point_id), &permission)| Entry {
                    group_id,
                    access_point_id,
                    permission,
                }),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<(u64, u64), Permission>, D::Error> {
        Ok(Vec::<Stored>::deserialize(d)?
            .into_iter()
            .map(|stored| match stored {
                Stored::Entry(e) => ((e.group_id, e.access_point_id), e.permission),
                Stored::Pair(g, d) => (
                    (g, d),
                    Permission {
                        schedule_id: crate::seed::ALWAYS_SCHEDULE_ID,
                        privacy_mode_override: false,
                    },
                ),
            })
            .collect())
    }
}
