//! The OpenAPI 3.1 description, built from the same collection types that parse requests.

use crate::collections::*;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem, PathsBuilder,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr, Required,
    ResponseBuilder, ResponsesBuilder,
};
use utoipa::{PartialSchema, ToSchema};

const JSON: &str = "application/json";

fn reference(name: &str) -> Ref {
    Ref::from_schema_name(name)
}

fn string_param(name: &str, description: &str) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build()
}

fn query_param(name: &str, description: &str, ty: Type) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(ObjectBuilder::new().schema_type(ty)))
        .build()
}

fn json_response(description: &str, schema: Option<Ref>) -> utoipa::openapi::Response {
    let mut b = ResponseBuilder::new().description(description);
    if let Some(s) = schema {
        b = b.content(JSON, ContentBuilder::new().schema(Some(s)).build());
    }
    b.build()
}

fn errors(mut b: ResponsesBuilder, codes: &[(&str, &str)]) -> ResponsesBuilder {
    for (code, why) in codes {
        b = b.response(*code, json_response(why, Some(reference("Error"))));
    }
    b.response(
        "401",
        json_response("No valid bearer token", Some(reference("Error"))),
    )
}

fn page_schema(item: &str) -> Schema {
    ObjectBuilder::new()
        .property(
            "items",
            utoipa::openapi::schema::ArrayBuilder::new().items(reference(item)),
        )
        .required("items")
        .property(
            "next_cursor",
            ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                    Type::String,
                    Type::Null,
                ]))
                .description(Some(
                    "Pass as `cursor` for the next page; null on the last page",
                )),
        )
        .required("next_cursor")
        .into()
}

fn error_schema() -> Schema {
    ObjectBuilder::new()
        .property("error", reference("ErrorDetail"))
        .required("error")
        .into()
}

/// What went wrong, alone: inside the error body, and in a batch's results.
fn error_detail_schema() -> Schema {
    ObjectBuilder::new()
        .property("code", ObjectBuilder::new().schema_type(Type::String))
        .required("code")
        .property("message", ObjectBuilder::new().schema_type(Type::String))
        .required("message")
        .property(
            "field",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some("The field at fault, when one is")),
        )
        .into()
}

/// A record's id in the path: what `Id::parse` takes.
fn id_param() -> utoipa::openapi::path::Parameter {
    let mut p = string_param(
        "id",
        "The caller's id: 1 to 128 characters of A-Z a-z 0-9 . _ : - (not . or ..)",
    );
    p.schema = Some(RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(ID_PATTERN))
            .build(),
    )));
    p
}

/// Stricter than the server (which also takes ids beginning with a dot, other than `.` and
/// `..`), so that every id a generated client or a fuzzer makes from it is accepted.
const ID_PATTERN: &str = r"^[A-Za-z0-9_:-][A-Za-z0-9._:-]{0,127}$";

struct Doc {
    paths: PathsBuilder,
    components: ComponentsBuilder,
}

impl Doc {
    fn schema<T: ToSchema>(mut self) -> Self {
        let mut deps = vec![];
        T::schemas(&mut deps);
        for (name, s) in deps {
            self.components = self.components.schema(name, s);
        }
        self.components = self.components.schema(T::name(), T::schema());
        self
    }

    fn collection<C: Collection>(mut self, title: &str, singular: &str) -> Self {
        let body = C::Body::name().into_owned();
        self = self.schema::<C::Body>();
        // A record as shown: the body's fields (write-only ones are never sent) with the id and
        // what the server adds. A copy of the body's object rather than an allOf of it: the
        // body refuses unknown fields, and an allOf would refuse the id with them.
        let shown = match C::Body::schema() {
            RefOr::T(Schema::Object(mut o)) => {
                o.additional_properties = None;
                o.properties.insert(
                    "id".into(),
                    RefOr::T(Schema::Object(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .read_only(true)
                            .build(),
                    )),
                );
                o.required.insert(0, "id".into());
                for (name, schema) in C::read_only() {
                    o.properties.insert(name.into(), RefOr::T(schema));
                }
                Schema::Object(o)
            }
            _ => Schema::AllOf(AllOfBuilder::new().item(reference(&body)).build()),
        };
        self.components = self
            .components
            .schema(title, shown)
            .schema(format!("{title}Page"), page_schema(title));
        let tag = C::PATH;
        let list = OperationBuilder::new()
            .operation_id(Some(format!("list_{}", C::PATH.replace('-', "_"))))
            .summary(Some(format!("List {}", C::PATH.replace('-', " "))))
            .tag(tag)
            .parameter(query_param(
                "limit",
                "Page size, 1 to 500 (default 50)",
                Type::Integer,
            ))
            .parameter(query_param(
                "cursor",
                "The `next_cursor` of the previous page",
                Type::String,
            ))
            .responses(
                errors(ResponsesBuilder::new(), &[("400", "Bad query")]).response(
                    "200",
                    json_response("A page", Some(reference(&format!("{title}Page")))),
                ),
            );
        let id = id_param;
        let get = OperationBuilder::new()
            .operation_id(Some(format!("get_{singular}")))
            .summary(Some(format!("Get a {}", singular.replace('_', " "))))
            .tag(tag)
            .parameter(id())
            .responses(
                errors(
                    ResponsesBuilder::new(),
                    &[("400", "Bad id"), ("404", "No such record")],
                )
                .response("200", json_response("The record", Some(reference(title)))),
            );
        let put = OperationBuilder::new()
            .operation_id(Some(format!("put_{singular}")))
            .summary(Some(format!(
                "Create or replace a {} by your id",
                singular.replace('_', " ")
            )))
            .tag(tag)
            .parameter(id())
            .request_body(Some(
                RequestBodyBuilder::new()
                    .content(
                        JSON,
                        ContentBuilder::new().schema(Some(reference(&body))).build(),
                    )
                    .required(Some(Required::True))
                    .build(),
            ))
            .responses(
                errors(
                    ResponsesBuilder::new(),
                    &[
                        ("400", "Malformed JSON or a bad id"),
                        ("409", "The stored credentials cannot be read (connections)"),
                        ("413", "Body over 1 MiB"),
                        ("415", "Not JSON"),
                        (
                            "422",
                            "A field is invalid or names a record that does not exist",
                        ),
                    ],
                )
                .response("200", json_response("Replaced", Some(reference(title))))
                .response("201", json_response("Created", Some(reference(title)))),
            );
        let patch = OperationBuilder::new()
            .operation_id(Some(format!("patch_{singular}")))
            .summary(Some(format!(
                "Change some fields of a {} (JSON Merge Patch, RFC 7396)",
                singular.replace('_', " ")
            )))
            .description(Some(
                "The fields sent replace the stored ones, `null` removes one (back to its default), \
                 the others stay as they are; the result is checked like a PUT. Write-only \
                 credentials left out are kept.",
            ))
            .tag(tag)
            .parameter(id())
            .request_body(Some(
                RequestBodyBuilder::new()
                    .content(
                        "application/merge-patch+json",
                        ContentBuilder::new()
                            .schema(Some(ObjectBuilder::new().description(Some(format!(
                                "Any subset of the fields of {body}"
                            )))))
                            .build(),
                    )
                    .required(Some(Required::True))
                    .build(),
            ))
            .responses(
                errors(
                    ResponsesBuilder::new(),
                    &[
                        ("400", "Malformed JSON or a bad id"),
                        ("404", "No such record"),
                        ("409", "The stored credentials cannot be read (connections)"),
                        ("413", "Body over 1 MiB"),
                        ("415", "Not JSON"),
                        (
                            "422",
                            "A field is invalid or names a record that does not exist",
                        ),
                    ],
                )
                .response("200", json_response("Changed", Some(reference(title)))),
            );
        let delete = OperationBuilder::new()
            .operation_id(Some(format!("delete_{singular}")))
            .summary(Some(format!("Delete a {}", singular.replace('_', " "))))
            .tag(tag)
            .parameter(id())
            .responses(
                errors(
                    ResponsesBuilder::new(),
                    &[
                        ("400", "Bad id"),
                        ("404", "No such record"),
                        ("409", "Other records still use it"),
                    ],
                )
                .response("204", json_response("Deleted", None)),
            );
        let mut one = PathItem::new(HttpMethod::Get, get);
        one.put = Some(put.build());
        one.patch = Some(patch.build());
        one.delete = Some(delete.build());
        self.paths = self
            .paths
            .path(
                format!("/api/v1/{}", C::PATH),
                PathItem::new(HttpMethod::Get, list),
            )
            .path(format!("/api/v1/{}/{{id}}", C::PATH), one);
        self
    }
}

fn links(mut doc: Doc) -> Doc {
    doc = doc.schema::<LinkBody>();
    let link: Schema = ObjectBuilder::new()
        .property(
            "kind",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["pass", "resource", "desk"])),
        )
        .required("kind")
        .property("item_id", ObjectBuilder::new().schema_type(Type::String))
        .required("item_id")
        .property("group_id", ObjectBuilder::new().schema_type(Type::String))
        .required("group_id")
        .into();
    doc.components = doc
        .components
        .schema("Link", link)
        .schema("LinkPage", page_schema("Link"));
    let params = || {
        [
            string_param("kind", "pass, resource or desk"),
            string_param("item_id", "The id of the pass, resource or desk"),
        ]
    };
    let list = OperationBuilder::new()
        .operation_id(Some("list_links"))
        .summary(Some("List links of inventory items to access groups"))
        .tag("links")
        .parameter(query_param(
            "limit",
            "Page size, 1 to 500 (default 50)",
            Type::Integer,
        ))
        .parameter(query_param(
            "cursor",
            "The `next_cursor` of the previous page",
            Type::String,
        ))
        .responses(
            errors(ResponsesBuilder::new(), &[("400", "Bad query")])
                .response("200", json_response("A page", Some(reference("LinkPage")))),
        );
    let get = OperationBuilder::new()
        .operation_id(Some("get_link"))
        .summary(Some("The access group an item opens"))
        .tag("links")
        .parameters(Some(params()))
        .responses(
            errors(
                ResponsesBuilder::new(),
                &[("400", "Bad kind or id"), ("404", "The item is not linked")],
            )
            .response("200", json_response("The link", Some(reference("Link")))),
        );
    let put = OperationBuilder::new()
        .operation_id(Some("put_link"))
        .summary(Some("Link an item to an access group"))
        .tag("links")
        .parameters(Some(params()))
        .request_body(Some(
            RequestBodyBuilder::new()
                .content(
                    JSON,
                    ContentBuilder::new()
                        .schema(Some(reference("LinkBody")))
                        .build(),
                )
                .required(Some(Required::True))
                .build(),
        ))
        .responses(
            errors(
                ResponsesBuilder::new(),
                &[
                    ("400", "Bad kind, id or JSON"),
                    ("404", "No such item"),
                    ("422", "Bad group id"),
                ],
            )
            .response("200", json_response("Replaced", Some(reference("Link"))))
            .response("201", json_response("Created", Some(reference("Link")))),
        );
    let delete = OperationBuilder::new()
        .operation_id(Some("delete_link"))
        .summary(Some("Unlink an item: it is no longer controlled"))
        .tag("links")
        .parameters(Some(params()))
        .responses(
            errors(
                ResponsesBuilder::new(),
                &[("400", "Bad kind or id"), ("404", "The item is not linked")],
            )
            .response("204", json_response("Unlinked", None)),
        );
    let mut one = PathItem::new(HttpMethod::Get, get);
    one.put = Some(put.build());
    one.delete = Some(delete.build());
    doc.paths = doc
        .paths
        .path("/api/v1/links", PathItem::new(HttpMethod::Get, list))
        .path("/api/v1/links/{kind}/{item_id}", one);
    doc
}

fn access(mut doc: Doc) -> Doc {
    doc = doc.schema::<doorsync_engine::access::AccessView>();
    let access: Schema = AllOfBuilder::new()
        .item(reference("AccessView"))
        .item(
            ObjectBuilder::new()
                .property(
                    "customer_id",
                    ObjectBuilder::new().schema_type(Type::String),
                )
                .property("visitor_id", ObjectBuilder::new().schema_type(Type::String)),
        )
        .description(Some(
            "A subject's access: each group entitled now or later and where it stands in Brivo \
             (`held`, `pending`, `failing` with its error, `due`, `no_connection`, \
             `connection_disabled`), the memberships Brivo holds that no entitlement covers \
             (removal pending, failing, or held past the entitlement while the connection is \
             disabled), the Brivo users serving the subject, and its sync",
        ))
        .into();
    doc.components = doc.components.schema("Access", access);
    for (path, who) in [
        ("/api/v1/customers/{id}/access", "customer"),
        ("/api/v1/visitors/{id}/access", "visitor"),
    ] {
        let op = OperationBuilder::new()
            .operation_id(Some(format!("{who}_access")))
            .summary(Some(format!(
                "Why a {who} has access: each group held or due, its causes, until when"
            )))
            .tag(if who == "customer" {
                "customers"
            } else {
                "visitors"
            })
            .parameter(string_param("id", "The id"))
            .responses(
                errors(
                    ResponsesBuilder::new(),
                    &[("400", "Bad id"), ("404", "No such record")],
                )
                .response(
                    "200",
                    json_response("Access now", Some(reference("Access"))),
                ),
            );
        doc.paths = doc.paths.path(path, PathItem::new(HttpMethod::Get, op));
    }
    let op_schema = ObjectBuilder::new()
        .property(
            "op",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["put", "patch", "delete"])),
        )
        .required("op")
        .property(
            "collection",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(
                    "A collection's path segment (`customers`, `pass-grants`, ...) or `links`",
                )),
        )
        .required("collection")
        .property(
            "id",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some("The record's id; for a link `{kind}/{item_id}`")),
        )
        .required("id")
        .property(
            "body",
            ObjectBuilder::new().description(Some(
                "For put, the collection's body; for patch, a JSON Merge Patch of it",
            )),
        );
    let result_schema = ObjectBuilder::new()
        .property("index", ObjectBuilder::new().schema_type(Type::Integer))
        .required("index")
        .property(
            "status",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .description(Some(
                    "What the single-record call would answer: 201, 200, 204, 400, 404, 409, 422",
                )),
        )
        .required("status")
        .property("error", reference("ErrorDetail"));
    doc.components = doc
        .components
        .schema(
            "BatchRequest",
            ObjectBuilder::new()
                .property(
                    "operations",
                    utoipa::openapi::schema::ArrayBuilder::new()
                        .items(op_schema)
                        .max_items(Some(crate::batch::MAX_OPERATIONS)),
                )
                .required("operations"),
        )
        .schema(
            "BatchResponse",
            ObjectBuilder::new()
                .property(
                    "results",
                    utoipa::openapi::schema::ArrayBuilder::new().items(result_schema),
                )
                .required("results")
                .property(
                    "summary",
                    ObjectBuilder::new()
                        .property("created", ObjectBuilder::new().schema_type(Type::Integer))
                        .property("replaced", ObjectBuilder::new().schema_type(Type::Integer))
                        .property("deleted", ObjectBuilder::new().schema_type(Type::Integer))
                        .property("failed", ObjectBuilder::new().schema_type(Type::Integer)),
                )
                .required("summary"),
        );
    let batch = OperationBuilder::new()
        .operation_id(Some("batch"))
        .summary(Some("Many puts, patches and deletes at once"))
        .description(Some(
            "Applied in order, 500 to a transaction; each operation stands alone (a failing one \
             changes nothing and has its own result) and a chunk's writes appear together. At \
             most 10,000 operations and 32 MiB a request.",
        ))
        .tag("batch")
        .request_body(Some(
            RequestBodyBuilder::new()
                .content(
                    JSON,
                    ContentBuilder::new()
                        .schema(Some(reference("BatchRequest")))
                        .build(),
                )
                .required(Some(Required::True))
                .build(),
        ))
        .responses(
            errors(
                ResponsesBuilder::new(),
                &[
                    ("400", "Malformed JSON"),
                    ("413", "Body over 32 MiB"),
                    ("415", "Not JSON"),
                    ("422", "Not a list of operations, or too many"),
                ],
            )
            .response(
                "200",
                json_response("One result per operation", Some(reference("BatchResponse"))),
            ),
        );
    doc.paths = doc
        .paths
        .path("/api/v1/batch", PathItem::new(HttpMethod::Post, batch));
    let invite = OperationBuilder::new()
        .operation_id(Some("resend_invitation"))
        .summary(Some("Send the customer a new Mobile Pass invitation now"))
        .description(Some(
            "The customer's reconcile cancels a pending invitation and sends a new one, as soon as \
             the customer has access and a Brivo user (and the account has passes left).",
        ))
        .tag("customers")
        .parameter(string_param("id", "The customer's id"))
        .responses(
            errors(
                ResponsesBuilder::new(),
                &[("400", "Bad id"), ("404", "No such customer")],
            )
            .response(
                "202",
                json_response(
                    "Asked for: {customer_id, requested_at}",
                    Some(reference("InvitationRequest")),
                ),
            ),
        );
    doc.components = doc.components.schema(
        "InvitationRequest",
        ObjectBuilder::new()
            .property(
                "customer_id",
                ObjectBuilder::new().schema_type(Type::String),
            )
            .required("customer_id")
            .property(
                "requested_at",
                ObjectBuilder::new().schema_type(Type::String).format(Some(
                    utoipa::openapi::schema::SchemaFormat::KnownFormat(
                        utoipa::openapi::schema::KnownFormat::DateTime,
                    ),
                )),
            )
            .required("requested_at"),
    );
    doc.paths = doc.paths.path(
        "/api/v1/customers/{id}/invitation",
        PathItem::new(HttpMethod::Post, invite),
    );
    let op = OperationBuilder::new()
        .operation_id(Some("openapi"))
        .summary(Some("This description"))
        .tag("meta")
        .responses(ResponsesBuilder::new().response("200", json_response("OpenAPI 3.1", None)));
    doc.paths = doc
        .paths
        .path("/api/v1/openapi.json", PathItem::new(HttpMethod::Get, op));
    doc
}

fn free_object(description: &str) -> Schema {
    ObjectBuilder::new().description(Some(description)).into()
}

fn engine_paths(mut doc: Doc) -> Doc {
    doc = doc.schema::<crate::sync::PlanBody>();
    doc.components = doc
        .components
        .schema("AuditPage", page_schema("AuditEntry"))
        .schema(
            "AuditEntry",
            free_object(
                "One change made (or tried) in the provider: seq, at, subject, group_id, group_name (from the directory, null when unknown), operation, cause, outcome, latency_ms, detail",
            ),
        )
        .schema(
            "SyncStatus",
            free_object(
                "due, oldest_due_at, oldest_overdue_seconds, in_flight, errors by kind; per connection: pause, last and next audit, last directory read, calls this month against the budget, memberships held past their entitlement; held_past_entitlement (who); setup_problems (each {kind, id, field, connection_id, problem: group_not_in_directory | site_not_in_directory | no_connection, message}); alerts (the conditions that hold: {condition, kind: connection_paused | credentials_refused | drift_found, connection_id, message, active_since, last_seen_at, last_sent_at}); alerting ({webhook, emails, pause_after_seconds})",
            ),
        )
        .schema("Preview", free_object("at, customers_considered, adds, removes, and each change as {customer_id, group_id, op}"));
    let q = |name: &str, what: &str| query_param(name, what, Type::String);
    let audit = OperationBuilder::new()
        .operation_id(Some("list_audit"))
        .summary(Some("Changes made in the provider, newest first"))
        .tag("sync")
        .parameters(Some([
            q("subject", "customer:ID or visitor:ID"),
            q("customer_id", "Shorthand for subject=customer:ID"),
            q("group_id", "A provider group id"),
            q(
                "operation",
                "add_to_group, remove_from_group, create_user, suspend_user, ...",
            ),
            q("outcome", "ok, or error for every failure"),
            q(
                "cause",
                "The beginning of the cause: booking:ID, contract:ID, pass_grant:ID, drift, ...",
            ),
            q("since", "RFC 3339 instant, inclusive"),
            q("until", "RFC 3339 instant, exclusive"),
            query_param("limit", "Page size, 1 to 500 (default 50)", Type::Integer),
            q("cursor", "The `next_cursor` of the previous page"),
        ]))
        .responses(
            errors(ResponsesBuilder::new(), &[("400", "Bad query")])
                .response("200", json_response("A page", Some(reference("AuditPage")))),
        );
    let status = OperationBuilder::new()
        .operation_id(Some("sync_status"))
        .summary(Some("The sync engine's state"))
        .tag("sync")
        .responses(
            errors(
                ResponsesBuilder::new(),
                &[("503", "No engine in this process")],
            )
            .response(
                "200",
                json_response("Status", Some(reference("SyncStatus"))),
            ),
        );
    let resync = OperationBuilder::new()
        .operation_id(Some("sync_resync"))
        .summary(Some(
            "Read every managed group from the provider now and repair drift",
        ))
        .tag("sync")
        .parameter(query_param(
            "wait",
            "true: answer with the audit reports when done",
            Type::Boolean,
        ))
        .responses(
            errors(
                ResponsesBuilder::new(),
                &[("400", "Bad query"), ("503", "No engine in this process")],
            )
            .response("202", json_response("Started", None))
            .response("200", json_response("Done (wait=true)", None)),
        );
    let plan = OperationBuilder::new()
        .operation_id(Some("plan"))
        .summary(Some(
            "What a change of links or buffers would add and remove now, applying nothing",
        ))
        .tag("sync")
        .request_body(Some(
            RequestBodyBuilder::new()
                .content(
                    JSON,
                    ContentBuilder::new()
                        .schema(Some(reference("PlanBody")))
                        .build(),
                )
                .required(Some(Required::True))
                .build(),
        ))
        .responses(
            errors(
                ResponsesBuilder::new(),
                &[("400", "Malformed JSON"), ("422", "A bad change")],
            )
            .response(
                "200",
                json_response("The preview", Some(reference("Preview"))),
            ),
        );
    let metrics = OperationBuilder::new()
        .operation_id(Some("metrics"))
        .summary(Some(
            "Prometheus text: reconciles, provider calls, transition lateness, due queue, drift",
        ))
        .tag("meta")
        .responses(
            errors(
                ResponsesBuilder::new(),
                &[("503", "No engine in this process")],
            )
            .response(
                "200",
                ResponseBuilder::new()
                    .description("OpenMetrics text (application/openmetrics-text 1.0.0), which Prometheus reads")
                    .build(),
            ),
        );
    let directory = OperationBuilder::new()
        .operation_id(Some("connection_directory"))
        .summary(Some(
            "The groups, sites and doors read from the connection's provider, with their ids",
        ))
        .tag("connections")
        .parameter(string_param("id", "The connection's id"))
        .responses(
            errors(
                ResponsesBuilder::new(),
                &[("400", "Bad id"), ("404", "No such connection")],
            )
            .response(
                "200",
                json_response(
                    "`{read_at, groups, sites, doors}`",
                    Some(reference("Directory")),
                ),
            ),
        );
    doc.components = doc.components.schema(
        "Directory",
        free_object("read_at, and groups, sites and doors as {id, name} (doors with site_id)"),
    );
    let presence_list = |id: &str, summary: &str, page: &str| {
        OperationBuilder::new()
            .operation_id(Some(id))
            .summary(Some(summary))
            .tag("presence")
            .parameters(Some([
                q("customer_id", "Only this customer's"),
                q("location_id", "Only at this location"),
                q("since", "RFC 3339 instant, inclusive"),
                q("until", "RFC 3339 instant, exclusive"),
                query_param("limit", "Page size, 1 to 500 (default 50)", Type::Integer),
                q("cursor", "The `next_cursor` of the previous page"),
            ]))
            .responses(
                errors(ResponsesBuilder::new(), &[("400", "Bad query")]).response(
                    "200",
                    json_response("A page, newest first", Some(reference(page))),
                ),
            )
    };
    let checkins = presence_list(
        "list_checkins",
        "Check-ins, each with what covered it",
        "CheckinPage",
    );
    let failed = presence_list(
        "list_failed_checkins",
        "Failed check-ins: the door opened, nothing covered them; each with its reason",
        "FailedCheckinPage",
    );
    let events = presence_list(
        "list_door_events",
        "Door events as the provider reported them, with what presence made of each",
        "DoorEventPage",
    );
    let presence = OperationBuilder::new()
        .operation_id(Some("presence"))
        .summary(Some("Who is in now, per location"))
        .tag("presence")
        .responses(errors(ResponsesBuilder::new(), &[]).response(
            "200",
            json_response("Per location", Some(reference("Presence"))),
        ));
    doc.components = doc
        .components
        .schema("CheckinPage", page_schema("Checkin"))
        .schema(
            "Checkin",
            free_object("id (the door event's), customer_id, location_id, local_date, checked_in_at, checked_out_at (at a check-out door, or the local midnight), covered_kind (booking, contract, pass, pass_day, same_day), covered_id"),
        )
        .schema("FailedCheckinPage", page_schema("FailedCheckin"))
        .schema(
            "FailedCheckin",
            free_object("id, customer_id (null when the user is nobody's), provider_user_id, location_id, at, reason: no_days_left | pass_expired | booking_not_started | booking_ended | contract_ended | not_a_customer | nothing_here"),
        )
        .schema("DoorEventPage", page_schema("DoorEvent"))
        .schema(
            "DoorEvent",
            free_object("event_id, occurred_at, provider_door_id, door_name, provider_user_id, granted, action (the provider's words), connection_id, received_at, processed_at, subject, location_id, outcome: check_in | check_out | failed_check_in | denied | none"),
        )
        .schema(
            "Presence",
            free_object("at, and locations as {location_id, name, local_date, count, present: [{customer_id, checked_in_at, covered_kind, covered_id}]}"),
        );
    doc.paths = doc
        .paths
        .path(
            "/api/v1/connections/{id}/directory",
            PathItem::new(HttpMethod::Get, directory),
        )
        .path("/api/v1/audit", PathItem::new(HttpMethod::Get, audit))
        .path("/api/v1/presence", PathItem::new(HttpMethod::Get, presence))
        .path("/api/v1/checkins", PathItem::new(HttpMethod::Get, checkins))
        .path(
            "/api/v1/failed-checkins",
            PathItem::new(HttpMethod::Get, failed),
        )
        .path(
            "/api/v1/door-events",
            PathItem::new(HttpMethod::Get, events),
        )
        .path(
            "/api/v1/sync/status",
            PathItem::new(HttpMethod::Get, status),
        )
        .path(
            "/api/v1/sync/resync",
            PathItem::new(HttpMethod::Post, resync),
        )
        .path("/api/v1/plan", PathItem::new(HttpMethod::Post, plan))
        .path("/metrics", PathItem::new(HttpMethod::Get, metrics));
    doc
}

/// The member app's JSON API: its bearer token is a member session's, not an API token.
fn member_paths(mut doc: Doc) -> Doc {
    let body = |description: &str| {
        Some(
            RequestBodyBuilder::new()
                .content(
                    JSON,
                    ContentBuilder::new()
                        .schema(Some(free_object(description)))
                        .build(),
                )
                .required(Some(Required::True))
                .build(),
        )
    };
    let op = |id: &str, summary: &str| {
        OperationBuilder::new()
            .operation_id(Some(id))
            .summary(Some(summary))
            .tag("member app")
    };
    let signin = op(
        "member_signin",
        "E-mails a one-time sign-in link (the same answer for any address)",
    )
    .securities(Some(Vec::<SecurityRequirement>::new()))
    .request_body(body("email"))
    .responses(
        ResponsesBuilder::new()
            .response(
                "202",
                json_response("A link is on its way if the address is a member's", None),
            )
            .response(
                "429",
                json_response(
                    "Too many links for this address or client in 15 minutes",
                    Some(reference("Error")),
                ),
            )
            .response(
                "503",
                json_response("Sign-in mail is not set up", Some(reference("Error"))),
            ),
    );
    let session = op(
        "member_session",
        "Exchanges a sign-in link's token (once, within 15 minutes) for a member session token",
    )
    .securities(Some(Vec::<SecurityRequirement>::new()))
    .request_body(body("token: the last part of the link's path"))
    .responses(
        ResponsesBuilder::new()
            .response(
                "201",
                json_response("`{token, expires_at}`", Some(reference("MemberSession"))),
            )
            .response(
                "401",
                json_response("The link expired or was used", Some(reference("Error"))),
            ),
    );
    let end = op("member_signout", "Ends the member session").responses(
        errors(ResponsesBuilder::new(), &[]).response("204", json_response("Signed out", None)),
    );
    let me = op(
        "member_me",
        "The member's passes, bookings, contracts and visitors",
    )
    .responses(errors(ResponsesBuilder::new(), &[]).response(
        "200",
        json_response("The member's view", Some(reference("MemberView"))),
    ));
    let doors = op("member_doors", "The doors the member may open now").responses(
        errors(ResponsesBuilder::new(), &[]).response(
            "200",
            json_response(
                "`{items: [{id, name, location_id, location_name}]}`",
                Some(reference("MemberDoors")),
            ),
        ),
    );
    let unlock = op(
        "member_unlock",
        "Opens a door the member holds at this instant (checked on the server)",
    )
    .parameter(string_param("id", "The door's id"))
    .responses(errors(
        ResponsesBuilder::new().response("204", json_response("The door opened", None)),
        &[
            (
                "403",
                "remote_unlock_off: the door does not allow remote unlock",
            ),
            ("404", "Not a door the member can open now"),
            ("412", "door_offline: the door's panel is offline"),
            ("502", "Brivo did not answer"),
        ],
    ));
    let pass = op(
        "member_mobile_pass",
        "The member's Mobile Pass; its code only when the space redeems passes automatically",
    )
    .responses(
        errors(ResponsesBuilder::new(), &[("502", "Brivo did not answer")]).response(
            "200",
            json_response(
                "`{status, expires_at, redeem_automatically, code}`",
                Some(reference("MobilePass")),
            ),
        ),
    );
    doc.components = doc
        .components
        .schema_from::<crate::app::view::MemberView>()
        .schema_from::<crate::app::view::MemberPass>()
        .schema_from::<crate::app::view::MemberBooking>()
        .schema_from::<crate::app::view::MemberContract>()
        .schema_from::<crate::app::view::MemberVisitor>()
        .schema_from::<crate::app::view::LocalTime>()
        .schema("MemberSession", free_object("token (send as Authorization: Bearer), expires_at"))
        .schema("MemberDoors", free_object("items: [{id, name, location_id, location_name}]"))
        .schema(
            "MobilePass",
            free_object("status: pending | redeemed | none, expires_at, redeem_automatically, code (only when redeem_automatically and pending)"),
        );
    let mut session_item = PathItem::new(HttpMethod::Post, session);
    session_item.delete = Some(end.build());
    doc.paths = doc
        .paths
        .path(
            "/app/api/v1/signin",
            PathItem::new(HttpMethod::Post, signin),
        )
        .path("/app/api/v1/session", session_item)
        .path("/app/api/v1/me", PathItem::new(HttpMethod::Get, me))
        .path("/app/api/v1/doors", PathItem::new(HttpMethod::Get, doors))
        .path(
            "/app/api/v1/doors/{id}/unlock",
            PathItem::new(HttpMethod::Post, unlock),
        )
        .path(
            "/app/api/v1/mobile-pass",
            PathItem::new(HttpMethod::Get, pass),
        );
    doc
}

pub fn document() -> OpenApi {
    let mut doc = Doc {
        paths: PathsBuilder::new(),
        components: ComponentsBuilder::new()
            .schema("Error", error_schema())
            .schema("ErrorDetail", error_detail_schema())
            .security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            ),
    }
    .collection::<Connections>("Connection", "connection")
    .collection::<Locations>("Location", "location")
    .collection::<Passes>("Pass", "pass")
    .collection::<Resources>("Resource", "resource")
    .collection::<Desks>("Desk", "desk")
    .collection::<Customers>("Customer", "customer")
    .collection::<Teams>("Team", "team")
    .collection::<Bookings>("Booking", "booking")
    .collection::<Contracts>("Contract", "contract")
    .collection::<PassGrants>("PassGrant", "pass_grant")
    .collection::<Visitors>("Visitor", "visitor")
    .collection::<Doors>("Door", "door");
    doc = member_paths(engine_paths(access(links(doc))));
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("doorsync")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some("Keeps door access groups in step with what a workspace's customers have bought.")),
        )
        .paths(doc.paths)
        .components(Some(doc.components.build()))
        .security(Some([SecurityRequirement::new("bearer", Vec::<String>::new())]))
        .build();
    with_body_errors(&mut doc);
    doc
}

/// Every operation that reads a body can refuse it the same ways: malformed JSON (400), too
/// large (413), not JSON (415), or not what the operation takes (422).
fn with_body_errors(doc: &mut OpenApi) {
    for item in doc.paths.paths.values_mut() {
        for op in [&mut item.put, &mut item.post, &mut item.patch]
            .into_iter()
            .flatten()
        {
            if op.request_body.is_none() {
                continue;
            }
            for (code, why) in [
                ("400", "Malformed JSON"),
                ("413", "The body is too large"),
                (
                    "415",
                    "The body is not JSON (Content-Type application/json)",
                ),
                ("422", "The body is not what this operation takes"),
            ] {
                op.responses
                    .responses
                    .entry(code.into())
                    .or_insert_with(|| RefOr::T(json_response(why, Some(reference("Error")))));
            }
        }
    }
}
