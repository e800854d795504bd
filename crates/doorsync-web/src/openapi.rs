//! The OpenAPI 3.1 description, gathered from the routers: each handler describes itself (see
//! `api::routes` and `app::api_routes`). What is added here holds for every operation alike: the
//! security schemes, and the answers of the token check and of the body reader.

use crate::error::ErrorBody;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr, Response,
    ResponseBuilder,
};
use utoipa::{PartialSchema, ToSchema};

/// An answer with a JSON body of `schema`, or none.
pub(crate) fn answer(description: &str, schema: Option<Ref>) -> Response {
    let mut b = ResponseBuilder::new().description(description);
    if let Some(s) = schema {
        b = b.content(
            "application/json",
            ContentBuilder::new().schema(Some(s)).build(),
        );
    }
    b.build()
}

/// An answer in the error shape.
pub(crate) fn error_answer(description: &str) -> Response {
    answer(description, Some(Ref::from_schema_name(ErrorBody::name())))
}

pub fn document() -> OpenApi {
    let bearer = || SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
    let mut errors = vec![];
    ErrorBody::schemas(&mut errors);
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("doorsync")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Keeps door access groups in step with what a workspace's customers have bought.",
                )),
        )
        .components(Some(
            ComponentsBuilder::new()
                .schema(ErrorBody::name(), ErrorBody::schema())
                .schemas_from_iter(errors)
                .security_scheme("bearer", bearer())
                .security_scheme("member", bearer())
                .build(),
        ))
        .security(Some([SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]))
        .build();
    doc.merge(crate::api::routes().into_openapi());
    doc.merge(crate::app::api_routes().into_openapi());
    with_common_answers(&mut doc);
    closed(&mut doc);
    doc
}

/// Every object the server writes is a Rust struct that has exactly the fields described, so
/// the schemas say so (`additionalProperties: false`): a field shown but not described fails the
/// fuzzer's response check and the contract test. Not the parts of an `allOf` (a flattened
/// struct), which each describe some of the fields only.
fn closed(doc: &mut OpenApi) {
    use utoipa::openapi::schema::AdditionalProperties;
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    // The parts of every allOf, wherever it is written.
    fn parts_of(v: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for item in m
                    .get("allOf")
                    .and_then(|a| a.as_array())
                    .into_iter()
                    .flatten()
                {
                    if let Some(r) = item.get("$ref").and_then(|r| r.as_str()) {
                        out.insert(r.rsplit('/').next().unwrap_or("").to_owned());
                    }
                }
                m.values().for_each(|x| parts_of(x, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| parts_of(x, out)),
            _ => {}
        }
    }
    let mut parts = std::collections::BTreeSet::new();
    parts_of(
        &serde_json::to_value(&components.schemas).unwrap_or_default(),
        &mut parts,
    );
    for (name, schema) in components.schemas.iter_mut() {
        if parts.contains(name) {
            continue;
        }
        if let RefOr::T(utoipa::openapi::Schema::Object(o)) = schema
            && !o.properties.is_empty()
            && o.additional_properties.is_none()
        {
            o.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
        }
    }
}

/// Every operation behind a token can be refused for it (401), and every operation that reads a
/// body can refuse the body the same ways: malformed JSON (400), too large (413), not JSON
/// (415), or not what the operation takes (422). An operation's own words for a code stay.
fn with_common_answers(doc: &mut OpenApi) {
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            // An operation without its own `security` takes the document's: the API token.
            let anonymous = op
                .security
                .as_ref()
                .is_some_and(|s| s.iter().all(|r| *r == SecurityRequirement::default()));
            if !anonymous {
                op.responses
                    .responses
                    .entry("401".into())
                    .or_insert_with(|| RefOr::T(error_answer("No valid bearer token")));
            }
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
                    .or_insert_with(|| RefOr::T(error_answer(why)));
            }
        }
    }
}
