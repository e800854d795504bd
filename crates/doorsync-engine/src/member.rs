//! What the member app asks of the engine: the doors a member may open now, opening one (checked
//! here, on the server, against what they hold at that instant), and their Mobile Pass.

use crate::access::{GroupState, access_view};
use crate::provider::{MobilePass, ProviderError, Unlock};
use crate::*;
use doorsync_core::{Connection, Door, Id, Location};
use doorsync_store::StoreError;
use std::collections::BTreeMap;

/// A door a member may open now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct MemberDoor {
    pub id: String,
    pub name: String,
    pub location_id: String,
    pub location_name: String,
}

/// What became of a member's unlock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberUnlock {
    Opened,
    /// The door's panel is offline.
    Offline,
    /// The door does not allow remote unlocking.
    NotAllowed,
    /// Not a door this member may open now (or no door at all): the same answer for both, so
    /// nobody learns of doors that are not theirs.
    NotTheirs,
    /// The provider could not be asked.
    Failed(String),
}

#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

/// How far apart doorsync's unlock and the provider's event may be and still be matched.
pub const UNLOCK_MATCH: SignedDuration = SignedDuration::from_mins(2);

impl Engine {
    /// The doors the customer may open now: those of the groups they hold at this instant
    /// (entitled now and held in the provider), at connections that list doors in the app.
    pub async fn member_doors(&self, customer: &Id) -> Result<Vec<MemberDoor>, StoreError> {
        Ok(self
            .openable(customer)
            .await?
            .into_iter()
            .map(|(d, _, l)| MemberDoor {
                id: d.id.to_string(),
                name: d.name,
                location_id: l.id.to_string(),
                location_name: l.name,
            })
            .collect())
    }

    async fn openable(
        &self,
        customer: &Id,
    ) -> Result<Vec<(Door, Connection, Location)>, StoreError> {
        let store = &self.reconciler.store;
        let now = self.reconciler.clock.now();
        let subject = Subject::Customer(customer.clone());
        let Some(view) = access_view(store.as_ref(), &subject, now).await? else {
            return Ok(vec![]);
        };
        let mut held: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for g in view.groups.iter().filter(|g| g.state == GroupState::Held) {
            if let Some(c) = &g.connection_id {
                held.entry(c.clone()).or_default().push(g.group_id.clone());
            }
        }
        if held.is_empty() {
            return Ok(vec![]);
        }
        let mut connections = BTreeMap::new();
        let mut locations = BTreeMap::new();
        for r in store.list_all(Kind::Connection).await? {
            if let Record::Connection(c) = r
                && c.enabled
                && c.list_doors_in_app
            {
                connections.insert(c.id.to_string(), c);
            }
        }
        for r in store.list_all(Kind::Location).await? {
            if let Record::Location(l) = r {
                locations.insert(l.id.to_string(), l);
            }
        }
        let mut doors_by_connection = BTreeMap::new();
        for (c, groups) in &held {
            let Some(connection) = connections.get(c) else {
                continue;
            };
            let (mut doors, unread) = store.doors_of_groups(c, groups).await?;
            if !unread.is_empty() {
                // A group linked since the last directory read: read its doors now, once.
                doors.extend(self.read_group_doors(connection, unread).await);
            }
            doors_by_connection.insert(c.clone(), doors);
        }
        let mut out = vec![];
        for r in store.list_all(Kind::Door).await? {
            let Record::Door(d) = r else { continue };
            let Some(l) = locations.get(d.location_id.as_str()) else {
                continue;
            };
            let Some(c) = l
                .connection_id
                .as_ref()
                .and_then(|c| connections.get(c.as_str()))
            else {
                continue;
            };
            let opens = d.gone_at.is_none()
                && d.provider_door_id.as_ref().is_some_and(|p| {
                    doors_by_connection
                        .get(c.id.as_str())
                        .is_some_and(|set| set.contains(p))
                });
            if opens {
                out.push((d, c.clone(), l.clone()));
            }
        }
        out.sort_by(|a, b| (&a.2.name, &a.0.name).cmp(&(&b.2.name, &b.0.name)));
        Ok(out)
    }

    async fn read_group_doors(&self, connection: &Connection, groups: Vec<String>) -> Vec<String> {
        let Ok(provider) = self.reconciler.providers.provider(connection) else {
            return vec![];
        };
        let mut read = BTreeMap::new();
        for g in groups {
            match provider.group_doors(&g).await {
                Ok(doors) => {
                    read.insert(g, doors);
                }
                Err(e) => {
                    tracing::warn!(connection = %connection.id, group = %g, error = %e, "reading a group's doors failed");
                }
            }
        }
        let store = &self.reconciler.store;
        if let Err(e) = store
            .replace_group_doors(connection.id.as_str(), &read)
            .await
        {
            tracing::warn!(connection = %connection.id, error = %e, "keeping a group's doors failed");
        }
        read.into_values().flatten().collect()
    }

    /// Opens `door` for the customer if they may open it at this instant. The unlock is
    /// recorded first, so the provider's event (which names the administrator) is counted for
    /// the member however soon it arrives; an unlock that did not happen is forgotten.
    pub async fn unlock_for_member(
        &self,
        customer: &Id,
        door: &str,
    ) -> Result<MemberUnlock, StoreError> {
        let openable = self.openable(customer).await?;
        let Some((d, c, _)) = openable.into_iter().find(|(d, _, _)| d.id.as_str() == door) else {
            return Ok(MemberUnlock::NotTheirs);
        };
        let Some(provider_door) = d.provider_door_id.clone() else {
            return Ok(MemberUnlock::NotTheirs);
        };
        let store = &self.reconciler.store;
        let now = self.reconciler.clock.now();
        let mut raw = [0u8; 16];
        let id = match getrandom::fill(&mut raw) {
            Ok(()) => raw.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            Err(e) => return Ok(MemberUnlock::Failed(format!("no randomness: {e}"))),
        };
        store
            .record_remote_unlock(&id, c.id.as_str(), &provider_door, customer.as_str(), now)
            .await?;
        let result = match self.reconciler.providers.provider(&c) {
            Ok(p) => p.unlock(&provider_door).await,
            Err(e) => Err(e),
        };
        let outcome = match result {
            Ok(Unlock::Opened) => return Ok(MemberUnlock::Opened),
            Ok(Unlock::Offline) => MemberUnlock::Offline,
            Ok(Unlock::NotAllowed) => MemberUnlock::NotAllowed,
            Err(e) => MemberUnlock::Failed(e.message),
        };
        store.forget_remote_unlock(&id).await?;
        Ok(outcome)
    }

    /// The customer's Mobile Pass invitation, read from the provider of each connection that
    /// holds a user for them (the first found).
    pub async fn mobile_pass(&self, customer: &Id) -> Result<Option<MobilePass>, MemberError> {
        let store = &self.reconciler.store;
        let subject = Subject::Customer(customer.clone());
        for c in store.mirror_connections_of(&subject).await? {
            let Some(Record::Connection(connection)) = store.get(Kind::Connection, &c).await?
            else {
                continue;
            };
            let Some(user) = store.mirror_user(&c, &subject).await? else {
                continue;
            };
            let provider = self.reconciler.providers.provider(&connection)?;
            if let Some(pass) = provider.mobile_pass(&user.user_id).await? {
                return Ok(Some(pass));
            }
        }
        Ok(None)
    }

    /// Whether any connection the customer has a user at redeems passes automatically (a
    /// white-label app may then be given the code to redeem).
    pub async fn redeems_automatically(&self, customer: &Id) -> Result<bool, StoreError> {
        let store = &self.reconciler.store;
        let subject = Subject::Customer(customer.clone());
        for c in store.mirror_connections_of(&subject).await? {
            if let Some(Record::Connection(connection)) = store.get(Kind::Connection, &c).await?
                && connection.redeem_passes_automatically
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
