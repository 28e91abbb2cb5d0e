//! The OpenAPI 3.1 document of the native API (`/api/v1/…`), served at
//! `GET /api/v1/openapi.json`. Public and unrecorded, like `sys/health`:
//! it describes the routes and their bodies, never any data of the server
//! (docs/api.md, "OpenAPI document").
//!
//! Generated, not written by hand: the operations are the route table's
//! native (method, path) pairs ([`routes::native_routes`]: the `routes!`
//! table and the access table [`crate::access::ENV_ROUTES`], the same two
//! the router is built from), each with its path parameters read from the
//! path template. [`shape`] adds the request and response bodies, from
//! `#[derive(utoipa::ToSchema)]` on the request types (`src/http`) and the
//! service views they answer with. The core surface (organizations,
//! projects, environments, secrets with reveal, history and rollback, the
//! caller's tokens) is typed; every other route has a generic shape for now
//! (a JSON object body, any `data`). Every error answer, whatever its
//! status, is the common error shape ([`ErrorBody`]).

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, ComponentsBuilder, ObjectBuilder, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    Content, InfoBuilder, OpenApi, OpenApiBuilder, PathItem, PathsBuilder, Ref, RefOr, Required, ResponseBuilder,
    ResponsesBuilder, Schema,
};
use utoipa::{PartialSchema, ToSchema};

use super::routes::{self, ENV_PREFIX};
use super::{api, identity};
use crate::service::{
    BreachPolicyView, DeletedView, EnvView, IssuedToken, OrgView, ProjectView, PurgedView, RestoredView, SecretView,
    TokenView, VersionView,
};

/// The path of the document itself.
pub(super) const DOCUMENT_PATH: &str = "/api/v1/openapi.json";

/// Every native error answer (any 4xx or 5xx; also the 202 of a change
/// that waits for approval, whose `data` names the request).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // a schema only: the answers are built in error.rs
pub(crate) struct ErrorBody {
    /// true for an error (false only for `approval_pending`, HTTP 202)
    error: bool,
    /// machine-readable code (`not_found`, `invalid`, `sealed`, …)
    code: String,
    /// what went wrong, for a person
    message: String,
    /// null, or details (`approval_pending`: `request_id`, `status`)
    #[schema(value_type = Option<Object>)]
    data: Option<serde_json::Value>,
}

/// `GET /api/v1/openapi.json`: the document (built once).
pub(super) async fn spec() -> Response {
    static DOC: OnceLock<String> = OnceLock::new();
    let body = DOC.get_or_init(|| {
        document().to_json().unwrap_or_else(|e| {
            tracing::error!(error = %e, "OpenAPI document does not serialize");
            "{}".to_owned()
        })
    });
    ([(header::CONTENT_TYPE, "application/json")], body.as_str()).into_response()
}

/// A query parameter of an operation: name, type, required, description.
type Query = (&'static str, Type, bool, &'static str);

const DELETED: &[Query] = &[(
    "deleted",
    Type::Boolean,
    false,
    "list what was deleted (restorable) instead",
)];
const NOW: &[Query] = &[(
    "now",
    Type::Boolean,
    false,
    "purge before the deletion window ends (owners)",
)];
const REVEAL: &[Query] = &[
    (
        "reveal",
        Type::Boolean,
        false,
        "include the plaintext value (permission `reveal`)",
    ),
    (
        "resolve",
        Type::Boolean,
        false,
        "with `reveal`: resolve the value's `${…}` references",
    ),
];
const DIFF: &[Query] = &[
    ("a", Type::String, true, "one environment's slug"),
    ("b", Type::String, true, "the other environment's slug"),
    (
        "values",
        Type::Boolean,
        false,
        "compare values too (permission `reveal` on both)",
    ),
];
const PULL: &[Query] = &[("format", Type::String, false, "env, json or yaml")];

/// What one operation takes and answers.
struct Shape {
    /// the JSON request body, if it takes one
    body: Option<RefOr<Schema>>,
    /// the whole 200 answer
    answer: RefOr<Schema>,
    /// its query parameters
    query: &'static [Query],
    /// typed (true) or the generic shape
    typed: bool,
}

fn schema_ref<T: ToSchema>() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(T::name()))
}

fn any_value() -> RefOr<Schema> {
    ObjectBuilder::new().schema_type(SchemaType::AnyValue).into()
}

fn object() -> RefOr<Schema> {
    ObjectBuilder::new().schema_type(Type::Object).into()
}

fn array(items: RefOr<Schema>) -> RefOr<Schema> {
    ArrayBuilder::new().items(items).into()
}

/// A listing: live nodes, or (`?deleted=true`) deleted ones (`anyOf`: an
/// empty list is both).
fn listing(items: RefOr<Schema>) -> RefOr<Schema> {
    AnyOfBuilder::new()
        .item(array(items))
        .item(array(schema_ref::<DeletedView>()))
        .into()
}

/// An object with these required properties.
fn record(props: &[(&str, RefOr<Schema>)]) -> RefOr<Schema> {
    let mut b = ObjectBuilder::new().schema_type(Type::Object);
    for (name, schema) in props {
        b = b.property(*name, schema.clone()).required(*name);
    }
    b.into()
}

fn of_type(t: Type) -> RefOr<Schema> {
    ObjectBuilder::new().schema_type(t).into()
}

/// The success envelope `{"error":false,"message":"","data":…}`.
fn envelope(data: RefOr<Schema>) -> RefOr<Schema> {
    record(&[
        ("error", of_type(Type::Boolean)),
        ("message", of_type(Type::String)),
        ("data", data),
    ])
}

/// The shape of one native route (full path template).
fn shape(method: &str, path: &str) -> Shape {
    let typed = |body: Option<RefOr<Schema>>, data: RefOr<Schema>, query: &'static [Query]| Shape {
        body,
        answer: envelope(data),
        query,
        typed: true,
    };
    if let Some(rest) = path.strip_prefix(ENV_PREFIX) {
        let secret = || schema_ref::<SecretView>();
        return match (method, rest) {
            ("GET", "") => typed(None, schema_ref::<EnvView>(), &[]),
            ("PATCH", "") => typed(Some(schema_ref::<api::EnvUpdate>()), schema_ref::<EnvView>(), &[]),
            ("DELETE", "") => typed(None, schema_ref::<DeletedView>(), &[]),
            ("POST", "/restore") => typed(None, schema_ref::<RestoredView>(), &[]),
            ("DELETE", "/permanent") => typed(None, schema_ref::<PurgedView>(), NOW),
            ("GET", "/secrets") => typed(None, array(secret()), &[]),
            ("GET", "/secrets/{key}") => typed(None, secret(), REVEAL),
            ("POST" | "PUT", "/secrets/{key}") => typed(Some(schema_ref::<api::WriteSecret>()), secret(), &[]),
            ("DELETE", "/secrets/{key}") => typed(
                None,
                record(&[("key", of_type(Type::String)), ("deleted", of_type(Type::Boolean))]),
                &[],
            ),
            ("POST", "/secrets/{key}/restore") => typed(None, secret(), &[]),
            ("DELETE", "/secrets/{key}/permanent") => typed(
                None,
                record(&[("key", of_type(Type::String)), ("purged", of_type(Type::Boolean))]),
                &[],
            ),
            ("GET", "/secrets/{key}/history") => typed(None, array(schema_ref::<VersionView>()), &[]),
            ("POST", "/secrets/{key}/rollback") => typed(Some(schema_ref::<api::Rollback>()), secret(), &[]),
            // every value at once: the envelope's `data` is the name → value
            // map, plus the names this environment allows `coffer run` to set
            ("POST", "/inject") => Shape {
                body: None,
                answer: record(&[
                    ("error", of_type(Type::Boolean)),
                    ("message", of_type(Type::String)),
                    (
                        "data",
                        ObjectBuilder::new()
                            .schema_type(Type::Object)
                            .additional_properties(Some(of_type(Type::String)))
                            .into(),
                    ),
                    ("allowed_variables", array(of_type(Type::String))),
                ]),
                query: &[],
                typed: true,
            },
            ("GET", "/sync/pull") => generic(method, PULL),
            _ => generic(method, &[]),
        };
    }
    let org = || schema_ref::<OrgView>();
    let project = || schema_ref::<ProjectView>();
    let rename = || Some(schema_ref::<api::Rename>());
    match (method, path) {
        ("GET", "/api/v1/orgs") => typed(None, listing(org()), DELETED),
        ("POST", "/api/v1/orgs") => typed(Some(schema_ref::<api::NewOrg>()), org(), &[]),
        ("GET", "/api/v1/orgs/{org}") => typed(None, org(), &[]),
        ("PATCH", "/api/v1/orgs/{org}") => typed(rename(), org(), &[]),
        ("DELETE", "/api/v1/orgs/{org}" | "/api/v1/orgs/{org}/projects/{project}") => {
            typed(None, schema_ref::<DeletedView>(), &[])
        }
        ("POST", "/api/v1/orgs/{org}/restore" | "/api/v1/orgs/{org}/projects/{project}/restore") => {
            typed(None, schema_ref::<RestoredView>(), &[])
        }
        ("DELETE", "/api/v1/orgs/{org}/permanent" | "/api/v1/orgs/{org}/projects/{project}/permanent") => {
            typed(None, schema_ref::<PurgedView>(), NOW)
        }
        ("GET", "/api/v1/orgs/{org}/breach-policy") => typed(None, schema_ref::<BreachPolicyView>(), &[]),
        ("PUT", "/api/v1/orgs/{org}/breach-policy") => typed(
            Some(schema_ref::<api::BreachPolicy>()),
            schema_ref::<BreachPolicyView>(),
            &[],
        ),
        ("GET", "/api/v1/orgs/{org}/projects") => typed(None, listing(project()), DELETED),
        ("POST", "/api/v1/orgs/{org}/projects") => typed(Some(schema_ref::<api::NewOrg>()), project(), &[]),
        ("GET", "/api/v1/orgs/{org}/projects/{project}") => typed(None, project(), &[]),
        ("PATCH", "/api/v1/orgs/{org}/projects/{project}") => typed(rename(), project(), &[]),
        ("GET", "/api/v1/orgs/{org}/projects/{project}/diff") => generic(method, DIFF),
        ("POST", "/api/v1/orgs/{org}/projects/{project}/copy") => Shape {
            body: Some(schema_ref::<api::CopyBody>()),
            ..generic(method, &[])
        },
        ("GET", "/api/v1/orgs/{org}/projects/{project}/environments") => {
            typed(None, listing(schema_ref::<EnvView>()), DELETED)
        }
        ("POST", "/api/v1/orgs/{org}/projects/{project}/environments") => {
            typed(Some(schema_ref::<api::NewEnv>()), schema_ref::<EnvView>(), &[])
        }
        ("GET", "/api/v1/tokens") => typed(None, array(schema_ref::<TokenView>()), &[]),
        ("POST", "/api/v1/tokens") => typed(
            Some(schema_ref::<identity::NewToken>()),
            schema_ref::<IssuedToken>(),
            &[],
        ),
        ("DELETE", "/api/v1/tokens/{accessor}") => typed(None, record(&[("revoked", of_type(Type::Boolean))]), &[]),
        _ => generic(method, &[]),
    }
}

/// A route not typed yet: a JSON object body (writes), any `data`.
fn generic(method: &str, query: &'static [Query]) -> Shape {
    Shape {
        body: matches!(method, "POST" | "PUT" | "PATCH").then(object),
        answer: envelope(any_value()),
        query,
        typed: false,
    }
}

/// Routes that take no token.
fn public(method: &str, path: &str) -> bool {
    method == "GET" && path == DOCUMENT_PATH
        || method == "POST"
            && matches!(
                path,
                "/api/v1/auth/login"
                    | "/api/v1/auth/refresh"
                    | "/api/v1/auth/jwt/login"
                    | "/api/v1/auth/device/code"
                    | "/api/v1/auth/device/token"
                    | "/api/v1/auth/sso/{org}/start"
                    | "/api/v1/auth/sso/callback"
                    | "/api/v1/shares/open"
            )
}

/// The `{name}` parameters of a path template, in order.
pub(super) fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

fn http_method(m: &str) -> Option<HttpMethod> {
    Some(match m {
        "GET" => HttpMethod::Get,
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "PATCH" => HttpMethod::Patch,
        "DELETE" => HttpMethod::Delete,
        _ => return None,
    })
}

fn operation(method: &str, path: &str) -> Operation {
    let s = shape(method, path);
    let mut op = OperationBuilder::new()
        .operation_id(Some(format!("{} {path}", method.to_lowercase())))
        .tag(path.split('/').nth(3).unwrap_or("api"));
    if !s.typed {
        op = op.description(Some("Generic shape for now: a JSON object body, any `data`."));
    }
    for name in path_params(path) {
        op = op.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(of_type(Type::String))),
        );
    }
    for (name, ty, required, description) in s.query {
        op = op.parameter(
            ParameterBuilder::new()
                .name(*name)
                .parameter_in(ParameterIn::Query)
                .required(if *required { Required::True } else { Required::False })
                .description(Some(*description))
                .schema(Some(of_type(ty.clone()))),
        );
    }
    if let Some(body) = s.body {
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .content("application/json", Content::new(Some(body)))
                .required(Some(if s.typed { Required::True } else { Required::False }))
                .build(),
        ));
    }
    if public(method, path) {
        op = op.securities(Some([SecurityRequirement::default()]));
    }
    let ok = ResponseBuilder::new()
        .description("success")
        .content("application/json", Content::new(Some(s.answer)));
    let error = ResponseBuilder::new()
        .description("an error, in the common error shape (a change waiting for approval: 202, `approval_pending`)")
        .content("application/json", Content::new(Some(schema_ref::<ErrorBody>())));
    let success = if path == DOCUMENT_PATH { "200" } else { "2XX" };
    op.responses(
        ResponsesBuilder::new()
            .response(success, ok)
            .response("default", error)
            .build(),
    )
    .build()
}

/// The whole document.
pub(super) fn document() -> OpenApi {
    let mut paths = PathsBuilder::new();
    let mut items: Vec<(String, PathItem)> = Vec::new();
    for (method, path) in routes::native_routes() {
        let Some(m) = http_method(method) else { continue };
        let op = operation(method, &path);
        match items.iter_mut().find(|(p, _)| *p == path) {
            Some((_, item)) => item.merge_operations(PathItem::new(m, op)),
            None => items.push((path, PathItem::new(m, op))),
        }
    }
    for (path, item) in items {
        paths = paths.path(path, item);
    }
    let mut components = ComponentsBuilder::new().security_scheme(
        "token",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    let schemas: [(String, RefOr<Schema>); 21] = [
        (ErrorBody::name().into(), ErrorBody::schema()),
        (OrgView::name().into(), OrgView::schema()),
        (ProjectView::name().into(), ProjectView::schema()),
        (EnvView::name().into(), EnvView::schema()),
        (BreachPolicyView::name().into(), BreachPolicyView::schema()),
        (DeletedView::name().into(), DeletedView::schema()),
        (RestoredView::name().into(), RestoredView::schema()),
        (PurgedView::name().into(), PurgedView::schema()),
        (SecretView::name().into(), SecretView::schema()),
        (VersionView::name().into(), VersionView::schema()),
        (TokenView::name().into(), TokenView::schema()),
        (IssuedToken::name().into(), IssuedToken::schema()),
        (api::NewOrg::name().into(), api::NewOrg::schema()),
        (api::NewEnv::name().into(), api::NewEnv::schema()),
        (api::Rename::name().into(), api::Rename::schema()),
        (api::EnvUpdate::name().into(), api::EnvUpdate::schema()),
        (api::BreachPolicy::name().into(), api::BreachPolicy::schema()),
        (api::WriteSecret::name().into(), api::WriteSecret::schema()),
        (api::Rollback::name().into(), api::Rollback::schema()),
        (api::CopyBody::name().into(), api::CopyBody::schema()),
        (identity::NewToken::name().into(), identity::NewToken::schema()),
    ];
    for (name, schema) in schemas {
        components = components.schema(name, schema);
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("coffer native API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The native API under /api/v1. Generated from the route table (src/http/routes.rs); \
                     routes without typed bodies have a generic shape for now (docs/api.md).",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components.build()))
        .security(Some([SecurityRequirement::new("token", Vec::<String>::new())]))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::ENV_ROUTES;
    use axum::http::Method;

    fn documented() -> Vec<(String, String)> {
        let doc = serde_json::to_value(document()).expect("serializes");
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                // the path parameters are exactly the template's
                let mut params: Vec<&str> = op["parameters"]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .filter(|p| p["in"] == "path")
                            .filter_map(|p| p["name"].as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                let mut want = path_params(path);
                params.sort_unstable();
                want.sort_unstable();
                assert_eq!(params, want, "{method} {path}: path parameters");
                out.push((method.to_uppercase(), path.clone()));
            }
        }
        out
    }

    /// Every native route of the table is documented, and everything
    /// documented is routed: the route table's own lookup
    /// ([`routes::route_audit`], what the audit layer asks for every
    /// request) knows each documented (method, path).
    #[test]
    fn documents_exactly_the_native_routes() {
        let documented = documented();
        for (m, p) in routes::native_routes() {
            assert!(
                documented.iter().any(|(m2, p2)| m2 == m && *p2 == p),
                "{m} {p} is routed but not in the OpenAPI document"
            );
        }
        for (m, p) in &documented {
            let method = Method::from_bytes(m.as_bytes()).expect("method");
            assert!(
                routes::route_audit(&method, p).is_some(),
                "{m} {p} is documented but not routed"
            );
        }
        let table = ENV_ROUTES.len() + routes::ROUTE_ACTIONS.len();
        assert!(
            documented.len() > 100 && documented.len() < table,
            "{}",
            documented.len()
        );
    }

    /// The core surface is typed; a typed shape names only routes that
    /// exist (a renamed route cannot leave a stale shape behind).
    #[test]
    fn core_surface_is_typed() {
        let routes = routes::native_routes();
        let typed: Vec<String> = routes
            .iter()
            .filter(|(m, p)| shape(m, p).typed)
            .map(|(m, p)| format!("{m} {p}"))
            .collect();
        for want in [
            "GET /api/v1/orgs",
            "POST /api/v1/orgs/{org}/projects/{project}/environments",
            &format!("GET {ENV_PREFIX}/secrets/{{key}}"),
            &format!("GET {ENV_PREFIX}/secrets/{{key}}/history"),
            &format!("POST {ENV_PREFIX}/secrets/{{key}}/rollback"),
            "POST /api/v1/tokens",
        ] {
            assert!(typed.iter().any(|t| t == want), "{want} is not typed");
        }
        assert!(typed.len() >= 35, "{} typed", typed.len());
        let doc = document().to_json().expect("json");
        assert!(doc.contains("\"openapi\":\"3.1.0\""), "{}", &doc[..80]);
        // every $ref resolves
        let v: serde_json::Value = serde_json::from_str(&doc).expect("json");
        for r in doc.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = r.split('"').next().unwrap_or_default();
            assert!(v["components"]["schemas"].get(name).is_some(), "{name} unresolved");
        }
    }
}
