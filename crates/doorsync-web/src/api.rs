//! The REST API's routes and handlers. Each handler carries its description (a
//! `#[utoipa::path]`, or for the generic collection handlers the operations built beside them),
//! and the router is built from the handlers with it, so a route cannot go undescribed.

use crate::AppState;
use crate::collections::*;
use crate::error::{ApiError, ErrorBody};
use crate::input;
use crate::openapi::{answer, error_answer};
use crate::query::{IdPath, PageQuery, PathId, Q, parse_id};
use crate::view::{AccessOut, InvitationRequested, LinkPage, LinkView, Page, Shown};
use crate::write;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use doorsync_core::{Id, LinkKind, Subject};
use doorsync_engine::access::access_view;
use doorsync_store::{Kind, Record, link_key};
use serde_json::Value;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, Paths};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::ObjectBuilder;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, ResponsesBuilder, Schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

pub use crate::query::{DEFAULT_LIMIT, MAX_LIMIT};

/// Every route of the API that takes an API token, with its description.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .collection::<Connections>()
        .collection::<Locations>()
        .collection::<Passes>()
        .collection::<Resources>()
        .collection::<Desks>()
        .collection::<Customers>()
        .collection::<Teams>()
        .collection::<Bookings>()
        .collection::<Contracts>()
        .collection::<PassGrants>()
        .collection::<Visitors>()
        .collection::<Doors>()
        .routes(routes!(list_links))
        .routes(routes!(get_link, put_link, delete_link))
        .routes(routes!(customer_access))
        .routes(routes!(visitor_access))
        .routes(routes!(resend_invitation))
        .routes(routes!(crate::batch::batch).map(|r| {
            r.layer(axum::extract::DefaultBodyLimit::max(
                crate::batch::MAX_BATCH_BODY,
            ))
        }))
        .routes(routes!(openapi))
        .routes(routes!(crate::sync::audit))
        .routes(routes!(crate::presence::presence))
        .routes(routes!(crate::presence::checkins))
        .routes(routes!(crate::presence::failed_checkins))
        .routes(routes!(crate::presence::door_events))
        .routes(routes!(crate::sync::directory))
        .routes(routes!(crate::sync::status))
        .routes(routes!(crate::sync::resync))
        .routes(routes!(crate::sync::plan))
        .routes(routes!(crate::sync::metrics))
}

trait CollectionRoutes {
    fn collection<C: Collection>(self) -> Self;
}

impl CollectionRoutes for OpenApiRouter<AppState> {
    fn collection<C: Collection>(self) -> Self {
        let (many, one) = collection_routes::<C>();
        self.routes(many).routes(one)
    }
}

fn json_content(schema: impl Into<RefOr<Schema>>) -> utoipa::openapi::Content {
    ContentBuilder::new().schema(Some(schema)).build()
}

fn with_errors(mut b: ResponsesBuilder, codes: &[(&str, &str)]) -> ResponsesBuilder {
    for (code, why) in codes {
        b = b.response(*code, error_answer(why));
    }
    b
}

/// The routes of one collection, `/api/v1/{path}` and `/api/v1/{path}/{id}`, each with its
/// operations. `#[utoipa::path]` does not take generic handlers, so the operations are built
/// here from the same types the handlers read and answer: `C::Body` and `Shown<C>`.
fn collection_routes<C: Collection>() -> (UtoipaMethodRouter<AppState>, UtoipaMethodRouter<AppState>)
{
    let mut schemas = vec![
        (C::Body::name().into_owned(), C::Body::schema()),
        (
            <Page<Shown<C>>>::name().into_owned(),
            <Page<Shown<C>>>::schema(),
        ),
    ];
    // The record, and the schemas its body names.
    <Page<Shown<C>> as ToSchema>::schemas(&mut schemas);
    let shown = || Some(Ref::from_schema_name(C::TITLE));
    let body_ref = Ref::from_schema_name(C::Body::name());
    let tag = C::PATH;
    let words = C::SINGULAR.replace('_', " ");
    let id = || IdPath::into_params(|| None);
    let op = |verb: &str, summary: String| {
        OperationBuilder::new()
            .operation_id(Some(format!("{verb}_{}", C::SINGULAR)))
            .summary(Some(summary))
            .tag(tag)
            .parameters(Some(id()))
    };
    let list_op = OperationBuilder::new()
        .operation_id(Some(format!("list_{}", C::PATH.replace('-', "_"))))
        .summary(Some(format!("List {}", C::PATH.replace('-', " "))))
        .tag(tag)
        .parameters(Some(PageQuery::into_params(|| None)))
        .responses(
            with_errors(ResponsesBuilder::new(), &[("400", "Bad query")]).response(
                "200",
                answer(
                    "A page",
                    Some(Ref::from_schema_name(<Page<Shown<C>>>::name())),
                ),
            ),
        );
    let get_op = op("get", format!("Get a {words}")).responses(
        with_errors(
            ResponsesBuilder::new(),
            &[("400", "Bad id"), ("404", "No such record")],
        )
        .response("200", answer("The record", shown())),
    );
    let conflict = C::HOLDS_CREDENTIALS.then_some((
        "409",
        "The stored credentials cannot be read with this instance's secret key",
    ));
    let writes: Vec<_> = conflict
        .into_iter()
        .chain([(
            "422",
            "A field is invalid or names a record that does not exist",
        )])
        .collect();
    // What a client (or the fuzzer) can do next with the record it wrote, by the path's id.
    let mut next: Vec<String> = ["get", "patch", "delete"]
        .iter()
        .map(|verb| format!("{verb}_{}", C::SINGULAR))
        .collect();
    next.extend(C::FOLLOW_UPS.iter().map(|s| s.to_string()));
    let written = |description: &str| {
        let mut r = answer(description, shown());
        for operation in &next {
            r.links.insert(
                operation.clone(),
                RefOr::T(
                    LinkBuilder::new()
                        .operation_id(operation)
                        .parameter("id", "$request.path.id")
                        .build(),
                ),
            );
        }
        r
    };
    let put_op = op("put", format!("Create or replace a {words} by your id"))
        .request_body(Some(
            RequestBodyBuilder::new()
                .content("application/json", json_content(body_ref))
                .required(Some(Required::True))
                .build(),
        ))
        .responses(
            with_errors(ResponsesBuilder::new(), &writes)
                .response("200", written("Replaced"))
                .response("201", written("Created")),
        );
    let patch_op = op(
        "patch",
        format!("Change some fields of a {words} (JSON Merge Patch, RFC 7396)"),
    )
    .description(Some(
        "The fields sent replace the stored ones, `null` removes one (back to its default), \
             the others stay as they are; the result is checked like a PUT. Write-only \
             credentials left out are kept.",
    ))
    .request_body(Some(
        RequestBodyBuilder::new()
            .content(
                "application/merge-patch+json",
                json_content(ObjectBuilder::new().description(Some(format!(
                    "Any subset of the fields of {}",
                    C::Body::name()
                )))),
            )
            .required(Some(Required::True))
            .build(),
    ))
    .responses(
        with_errors(ResponsesBuilder::new(), &writes)
            .response("200", answer("Changed", shown()))
            .response("404", error_answer("No such record")),
    );
    let in_use = format!(
        "Other records still use it (from {})",
        C::REFERENCED_BY.join(", ")
    );
    let mut delete_errors = vec![("400", "Bad id"), ("404", "No such record")];
    if !C::REFERENCED_BY.is_empty() {
        delete_errors.push(("409", &in_use));
    }
    let delete_op = op("delete", format!("Delete a {words}")).responses(
        with_errors(ResponsesBuilder::new(), &delete_errors)
            .response("204", answer("Deleted", None)),
    );
    let many_path = format!("/api/v1/{}", C::PATH);
    let one_path = format!("/api/v1/{}/{{id}}", C::PATH);
    let mut many = Paths::new();
    many.add_path_operation(&many_path, vec![HttpMethod::Get], list_op);
    let mut one = Paths::new();
    for (method, op) in [
        (HttpMethod::Get, get_op),
        (HttpMethod::Put, put_op),
        (HttpMethod::Patch, patch_op),
        (HttpMethod::Delete, delete_op),
    ] {
        one.add_path_operation(&one_path, vec![method], op);
    }
    (
        (schemas.clone(), many, axum::routing::get(list::<C>)),
        (
            schemas,
            one,
            axum::routing::get(get_one::<C>)
                .put(put_one::<C>)
                .patch(patch_one::<C>)
                .delete(delete_one::<C>),
        ),
    )
}

async fn list_kind<T>(
    st: &AppState,
    kind: Kind,
    page: PageQuery,
    render: impl Fn(&Record) -> T,
) -> Result<Page<T>, ApiError> {
    let limit = page.limit();
    let records = st
        .store
        .list(kind, page.cursor.as_deref(), limit + 1)
        .await?;
    Ok(Page::of(records, limit, Record::key).map(|r| render(&r)))
}

async fn list<C: Collection>(
    State(st): State<AppState>,
    Q(page): Q<PageQuery>,
) -> Result<Json<Page<Shown<C>>>, ApiError> {
    Ok(Json(list_kind(&st, C::KIND, page, Shown::<C>::of).await?))
}

async fn get_one<C: Collection>(
    State(st): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<Shown<C>>, ApiError> {
    match st.store.get(C::KIND, id.as_str()).await? {
        Some(r) => Ok(Json(Shown::of(&r))),
        None => Err(ApiError::not_found(format_args!(
            "{} {id:?}",
            C::KIND.as_str()
        ))),
    }
}

async fn put_one<C: Collection>(
    State(st): State<AppState>,
    PathId(id): PathId,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Shown<C>>), ApiError> {
    let body: Value = input::json(&headers, body)?;
    let written = write::put::<C>(&st, id, body).await?;
    let status = if written.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(Shown::of(&written.record))))
}

/// JSON Merge Patch (RFC 7396): the fields sent replace the stored ones, `null` removes one
/// (back to its default), the rest stay. The record is read, patched as a whole body, checked
/// and written like a `PUT`.
async fn patch_one<C: Collection>(
    State(st): State<AppState>,
    PathId(id): PathId,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Shown<C>>, ApiError> {
    let patch: Value = input::json(&headers, body)?;
    let written = write::patch::<C>(&st, id, patch).await?;
    Ok(Json(Shown::of(&written.record)))
}

async fn delete_one<C: Collection>(
    State(st): State<AppState>,
    PathId(id): PathId,
) -> Result<StatusCode, ApiError> {
    if st
        .store
        .delete(C::KIND, id.as_str(), st.clock.now())
        .await?
    {
        st.wake();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format_args!(
            "{} {id:?}",
            C::KIND.as_str()
        )))
    }
}

fn link_view(r: &Record) -> Result<LinkView, ApiError> {
    LinkView::of(r).ok_or_else(|| ApiError::internal("a link key holds another kind of record"))
}

/// The two parts of a link's path.
#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Read by the path's extractor as a tuple; the struct describes it.
struct LinkPath {
    /// pass, resource or desk
    #[param(pattern = "^(pass|resource|desk)$")]
    kind: String,
    /// The id of the pass, resource or desk
    #[param(pattern = r"^[A-Za-z0-9_:-][A-Za-z0-9._:-]{0,127}$")]
    item_id: String,
}

fn link_path(
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(LinkKind, Id), ApiError> {
    let Path((kind, item)) =
        path.map_err(|e| ApiError::bad_request("invalid_id", "item_id", e.body_text()))?;
    let kind = LinkKind::parse(&kind).ok_or_else(|| {
        ApiError::bad_request("invalid_kind", "kind", "kind is pass, resource or desk")
    })?;
    Ok((kind, parse_id("item_id", &item)?))
}

/// List links of inventory items to access groups
#[utoipa::path(get, path = "/api/v1/links", tag = "links", operation_id = "list_links",
    params(PageQuery),
    responses(
        (status = 200, description = "A page", body = LinkPage),
        (status = 400, description = "Bad query", body = ErrorBody),
    ))]
async fn list_links(
    State(st): State<AppState>,
    Q(page): Q<PageQuery>,
) -> Result<Json<Page<LinkView>>, ApiError> {
    let page = list_kind(&st, Kind::Link, page, LinkView::of).await?;
    Ok(Json(Page {
        items: page.items.into_iter().flatten().collect(),
        next_cursor: page.next_cursor,
    }))
}

/// The access group an item opens
#[utoipa::path(get, path = "/api/v1/links/{kind}/{item_id}", tag = "links",
    operation_id = "get_link", params(LinkPath),
    responses(
        (status = 200, description = "The link", body = LinkView),
        (status = 400, description = "Bad kind or id", body = ErrorBody),
        (status = 404, description = "The item is not linked", body = ErrorBody),
    ))]
async fn get_link(
    State(st): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<LinkView>, ApiError> {
    let (kind, item) = link_path(path)?;
    match st
        .store
        .get(Kind::Link, &link_key(kind, item.as_str()))
        .await?
    {
        Some(r) => Ok(Json(link_view(&r)?)),
        None => Err(ApiError::not_found(format_args!(
            "link of {} {item:?}",
            kind.as_str()
        ))),
    }
}

/// Link an item to an access group
#[utoipa::path(put, path = "/api/v1/links/{kind}/{item_id}", tag = "links",
    operation_id = "put_link", params(LinkPath), request_body = LinkBody,
    responses(
        (status = 200, description = "Replaced", body = LinkView),
        (status = 201, description = "Created", body = LinkView),
        (status = 400, description = "Bad kind, id or JSON", body = ErrorBody),
        (status = 404, description = "No such item", body = ErrorBody),
        (status = 422, description = "Bad group id", body = ErrorBody),
    ))]
async fn put_link(
    State(st): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<LinkView>), ApiError> {
    let (kind, item_id) = link_path(path)?;
    let body: Value = input::json(&headers, body)?;
    let written = write::put_link(&st, kind, item_id, body).await?;
    let status = if written.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(link_view(&written.record)?)))
}

/// Unlink an item: it is no longer controlled
#[utoipa::path(delete, path = "/api/v1/links/{kind}/{item_id}", tag = "links",
    operation_id = "delete_link", params(LinkPath),
    responses(
        (status = 204, description = "Unlinked"),
        (status = 400, description = "Bad kind or id", body = ErrorBody),
        (status = 404, description = "The item is not linked", body = ErrorBody),
    ))]
async fn delete_link(
    State(st): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let (kind, item) = link_path(path)?;
    if st
        .store
        .delete(Kind::Link, &link_key(kind, item.as_str()), st.clock.now())
        .await?
    {
        st.wake();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format_args!(
            "link of {} {item:?}",
            kind.as_str()
        )))
    }
}

/// The access view of one subject, keyed by its id: the same view `doorsync explain` prints.
async fn access(st: &AppState, subject: Subject) -> Result<Json<AccessOut>, ApiError> {
    let (customer_id, visitor_id, what, id) = match &subject {
        Subject::Customer(id) => (Some(id.to_string()), None, "customer", id),
        Subject::Visitor(id) => (None, Some(id.to_string()), "visitor", id),
    };
    let view = access_view(st.store.as_ref(), &subject, st.clock.now())
        .await?
        .ok_or_else(|| ApiError::not_found(format_args!("{what} {id:?}")))?;
    Ok(Json(AccessOut {
        customer_id,
        visitor_id,
        view,
    }))
}

/// Send the customer a new Mobile Pass invitation now
///
/// The customer's reconcile cancels a pending invitation and sends a new one, as soon as the
/// customer has access and a Brivo user (and the account has passes left).
#[utoipa::path(post, path = "/api/v1/customers/{id}/invitation", tag = "customers",
    operation_id = "resend_invitation", params(IdPath),
    responses(
        (status = 202, description = "Asked for; the engine sends it", body = InvitationRequested),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 404, description = "No such customer", body = ErrorBody),
    ))]
async fn resend_invitation(
    State(st): State<AppState>,
    PathId(id): PathId,
) -> Result<(StatusCode, Json<InvitationRequested>), ApiError> {
    if st.store.get(Kind::Customer, id.as_str()).await?.is_none() {
        return Err(ApiError::not_found(format_args!("customer {id:?}")));
    }
    let now = st.clock.now();
    st.store
        .request_invitation(&Subject::Customer(id.clone()), now)
        .await?;
    st.wake();
    Ok((
        StatusCode::ACCEPTED,
        Json(InvitationRequested {
            customer_id: id.to_string(),
            requested_at: now,
        }),
    ))
}

/// Why a customer has access: each group held or due, its causes, until when
#[utoipa::path(get, path = "/api/v1/customers/{id}/access", tag = "customers",
    operation_id = "customer_access", params(IdPath),
    responses(
        (status = 200, description = "Access now", body = AccessOut),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 404, description = "No such record", body = ErrorBody),
    ))]
async fn customer_access(
    State(st): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<AccessOut>, ApiError> {
    access(&st, Subject::Customer(id)).await
}

/// Why a visitor has access: each group held or due, its causes, until when
#[utoipa::path(get, path = "/api/v1/visitors/{id}/access", tag = "visitors",
    operation_id = "visitor_access", params(IdPath),
    responses(
        (status = 200, description = "Access now", body = AccessOut),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 404, description = "No such record", body = ErrorBody),
    ))]
async fn visitor_access(
    State(st): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<AccessOut>, ApiError> {
    access(&st, Subject::Visitor(id)).await
}

/// This description
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI 3.1 description of this API",
        content_type = "application/json", body = Object)))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    // Gathered once: it is the same for the life of the process.
    static DOCUMENT: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    Json(DOCUMENT.get_or_init(crate::openapi::document).clone())
}
