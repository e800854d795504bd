//! OpenAPI schemas for values whose types live in doorsync-core, which knows nothing of OpenAPI.

use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, Object, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type,
};

/// A record's id as the description gives it: stricter than the server (which also takes ids
/// beginning with a dot, other than `.` and `..`), so that every id a generated client or a
/// fuzzer makes from it is accepted.
pub const ID_PATTERN: &str = r"^[A-Za-z0-9_:-][A-Za-z0-9._:-]{0,127}$";

/// A name: what `collections::name` takes. No control characters (Unicode's Cc) or
/// bidirectional overrides, and something other than white space.
const NAME_PATTERN: &str = concat!(
    r"^[^\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]*",
    r"[^\s\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]",
    r"[^\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]*$"
);

/// A provider's id (a group, site, user or door): 1 to 64 visible ASCII characters.
pub const PROVIDER_ID_PATTERN: &str = r"^[!-~]{1,64}$";

fn string(pattern: &str, nullable: bool) -> ObjectBuilder {
    let ty = if nullable {
        SchemaType::from_iter([Type::String, Type::Null])
    } else {
        SchemaType::Type(Type::String)
    };
    ObjectBuilder::new().schema_type(ty).pattern(Some(pattern))
}

pub fn name_schema() -> Object {
    string(NAME_PATTERN, false)
        .min_length(Some(1))
        .max_length(Some(200))
        .build()
}

pub fn id_schema() -> Object {
    string(ID_PATTERN, false)
        .description(Some("The id of a record"))
        .build()
}

pub fn optional_id_schema() -> Object {
    string(ID_PATTERN, true)
        .description(Some("The id of a record"))
        .build()
}

pub fn id_list_schema() -> Schema {
    Schema::Array(ArrayBuilder::new().items(id_schema()).build())
}

pub fn provider_id_list_schema() -> Schema {
    Schema::Array(
        ArrayBuilder::new()
            .items(string(PROVIDER_ID_PATTERN, false).build())
            .build(),
    )
}

fn string_enum(values: &[&str]) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .build()
}

pub fn provider_schema() -> Object {
    string_enum(&["brivo"])
}

pub fn no_access_policy_schema() -> Object {
    string_enum(&["remove_from_groups", "suspend", "delete"])
}

pub fn link_kind_schema() -> Object {
    string_enum(&["pass", "resource", "desk"])
}

pub fn desk_kind_schema() -> Object {
    string_enum(&["desk", "office"])
}

pub fn presence_role_schema() -> Object {
    string_enum(&["check_in", "check_out", "none"])
}

pub fn customer_status_schema() -> Object {
    string_enum(&["active", "suspended", "archived"])
}

pub fn booking_status_schema() -> Object {
    string_enum(&["confirmed", "cancelled"])
}

pub fn contract_status_schema() -> Object {
    string_enum(&["active", "cancelled"])
}

pub fn instant_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .read_only(true)
        .build()
}

pub fn string_array_schema(description: &str) -> Schema {
    Schema::Array(
        ArrayBuilder::new()
            .items(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(description))
            .build(),
    )
}
