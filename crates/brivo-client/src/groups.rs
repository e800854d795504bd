//! Groups and who is in them. Membership calls are the ones doorsync makes most: one
//! `PUT`/`DELETE /groups/{id}/users/{id}` per change.

use crate::client::{BrivoClient, Call};
use crate::error::{BrivoError, ErrorKind};
use crate::filter::Filter;
use crate::model::{
    Group, GroupAccessPoint, IdOnly, MAX_GROUP_NAME_CHARS, NewGroup, PermissionBody, User,
    UserGroupsChange,
};
use crate::paging::{Page, Pager};

const LIST: &str = "GET /groups";
const GET: &str = "GET /groups/{id}";
const CREATE: &str = "POST /groups";
const DELETE: &str = "DELETE /groups/{id}";
pub(crate) const ADD_MEMBER: &str = "PUT /groups/{id}/users/{id}";
pub(crate) const REMOVE_MEMBER: &str = "DELETE /groups/{id}/users/{id}";
const MEMBERS: &str = "GET /groups/{id}/users";
pub(crate) const USER_GROUPS: &str = "GET /users/{id}/groups";
pub(crate) const UPDATE_USER_GROUPS: &str = "POST /users/{id}/groups";
const PERMISSIONS: &str = "GET /groups/{id}/access/access-points";
const SET_PERMISSION: &str = "PUT /groups/{id}/access/access-points/{id}";
const REMOVE_PERMISSION: &str = "DELETE /groups/{id}/access/access-points/{id}";

impl BrivoClient {
    /// Every group matching `filter` (`name__eq` means "name contains").
    pub async fn list_groups(&self, filter: Option<&Filter>) -> Result<Vec<Group>, BrivoError> {
        self.groups(filter).all().await
    }

    /// Groups one page at a time.
    pub fn groups(&self, filter: Option<&Filter>) -> Pager<Group> {
        Pager::new(self, LIST, "/groups".into(), filter)
    }

    pub async fn get_group(&self, id: u64) -> Result<Group, BrivoError> {
        self.json(&Call::get(GET, format!("/groups/{id}"))).await
    }

    /// Creates a group. Groups have no external id to look a lost create up by, so a create
    /// with an unknown outcome (5xx, timeout, broken connection) is not repeated: the error is
    /// returned and the caller decides (e.g. by listing groups by name).
    pub async fn create_group(&self, name: &str) -> Result<Group, BrivoError> {
        if name.trim().is_empty() || name.chars().count() > MAX_GROUP_NAME_CHARS {
            // Brivo would answer 400; say so without spending a call.
            return Err(BrivoError::new(
                ErrorKind::InvalidInput,
                CREATE,
                format!("a group name needs 1 to {MAX_GROUP_NAME_CHARS} characters"),
            ));
        }
        self.json(&Call::post(CREATE, "/groups".into()).json(&NewGroup { name })?)
            .await
    }

    pub async fn delete_group(&self, id: u64) -> Result<(), BrivoError> {
        self.no_content(&Call::delete(DELETE, format!("/groups/{id}")))
            .await
    }

    /// Adds the user to the group (204). Safe to repeat.
    pub async fn add_user_to_group(&self, group_id: u64, user_id: u64) -> Result<(), BrivoError> {
        self.no_content(&Call::put(
            ADD_MEMBER,
            format!("/groups/{group_id}/users/{user_id}"),
        ))
        .await
    }

    /// Removes the user from the group (204). A repeat after a lost success may answer
    /// `NotFound`, which leaves the same end state.
    pub async fn remove_user_from_group(
        &self,
        group_id: u64,
        user_id: u64,
    ) -> Result<(), BrivoError> {
        self.no_content(&Call::delete(
            REMOVE_MEMBER,
            format!("/groups/{group_id}/users/{user_id}"),
        ))
        .await
    }

    /// Every member of the group (the user list fields only: id, externalId, names, suspended).
    pub async fn group_members(&self, group_id: u64) -> Result<Vec<User>, BrivoError> {
        self.group_members_pager(group_id).all().await
    }

    /// The group's members one page at a time, for the drift audit of large groups.
    pub fn group_members_pager(&self, group_id: u64) -> Pager<User> {
        Pager::new(self, MEMBERS, format!("/groups/{group_id}/users"), None)
    }

    /// The groups the user is in (at most 16 in Brivo).
    pub async fn user_groups(&self, user_id: u64) -> Result<Vec<Group>, BrivoError> {
        Pager::new(self, USER_GROUPS, format!("/users/{user_id}/groups"), None)
            .all()
            .await
    }

    /// Adds and removes several groups of one user in one call, and returns the user's groups
    /// afterwards. Adding a group the user is in, or removing one it is not in, is skipped by
    /// the server, so although this is a POST it is idempotent and retried as such. Brivo
    /// refuses the whole change if the user would end up in more than 16 groups.
    pub async fn update_user_groups(
        &self,
        user_id: u64,
        add: &[u64],
        remove: &[u64],
    ) -> Result<Vec<Group>, BrivoError> {
        let call = Call::post(UPDATE_USER_GROUPS, format!("/users/{user_id}/groups"))
            .idempotent()
            .json(&UserGroupsChange {
                add_groups: add,
                remove_groups: remove,
            })?;
        let page: Page<Group> = self.json(&call).await?;
        Ok(page.data)
    }

    /// The doors the group opens, each with its schedule (the group's permissions).
    pub async fn group_access_points(
        &self,
        group_id: u64,
    ) -> Result<Vec<GroupAccessPoint>, BrivoError> {
        Pager::new(
            self,
            PERMISSIONS,
            format!("/groups/{group_id}/access/access-points"),
            None,
        )
        .all()
        .await
    }

    /// Lets the group open the door under the schedule (or changes the schedule of that
    /// permission), and returns the permission. `privacy_mode_override` is only accepted for
    /// locks with a privacy mode (Salto, Allegion, ASSA Abloy); leave it `None` elsewhere.
    /// Setting the same permission again changes nothing, so this is retried as idempotent.
    pub async fn set_group_access_point(
        &self,
        group_id: u64,
        access_point_id: u64,
        schedule_id: u64,
        privacy_mode_override: Option<bool>,
    ) -> Result<GroupAccessPoint, BrivoError> {
        let call = Call::put(
            SET_PERMISSION,
            format!("/groups/{group_id}/access/access-points/{access_point_id}"),
        )
        .json(&PermissionBody {
            schedule: IdOnly { id: schedule_id },
            privacy_mode_override,
        })?;
        self.json(&call).await
    }

    /// Takes the door away from the group (204).
    pub async fn remove_group_access_point(
        &self,
        group_id: u64,
        access_point_id: u64,
    ) -> Result<(), BrivoError> {
        self.no_content(&Call::delete(
            REMOVE_PERMISSION,
            format!("/groups/{group_id}/access/access-points/{access_point_id}"),
        ))
        .await
    }
}
