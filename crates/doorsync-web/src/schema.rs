//! OpenAPI schemas for values whose types live in doorsync-core, which knows nothing of OpenAPI.

use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, Object, ObjectBuilder, Schema, SchemaFormat, Type,
};

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
