//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::problem::{FieldError, Problem};

/// Document-level information; paths are added by each module's router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "shopkeep",
        description = "Self-hosted commerce operations server. Errors are RFC 9457 problem documents \
                       (`application/problem+json`) carrying `request_id`, and `errors[]` naming every bad field on 422.",
        license(name = "AGPL-3.0-only", identifier = "AGPL-3.0-only"),
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&BearerAuth),
    tags(
        (name = "health", description = "Liveness and readiness probes"),
        (name = "auth", description = "Accounts, tokens (OAuth 2.0 password and refresh grants), JWKS"),
        (name = "shops", description = "Shops (tenants) and their members"),
        (name = "api-keys", description = "Per-shop API keys"),
        (name = "audit", description = "The shop's audit log"),
        (name = "orders", description = "Order requests, the approval workflow, live updates, search, export and statistics"),
        (name = "jobs", description = "Background jobs, queues and cron schedules (platform:admin)"),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` scheme: an access token (JWT) or an API key (`shk_...`).
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An access token from /api/v1/auth/token, or a shop API key (shk_...)",
                    ))
                    .build(),
            ),
        );
    }
}

/// Documents, on every operation but the liveness probe, what a client gets when the database
/// fails: 503 while it is unreachable (with `Retry-After`), and on writes 507 when its disk is
/// full. Applied to the finished document, after every router merged its paths.
pub fn with_dependency_faults(mut openapi: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let problem = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build()
    };
    for (path, item) in openapi.paths.paths.iter_mut() {
        if path == "/healthz" {
            continue;
        }
        let reads = [item.get.as_mut(), item.head.as_mut()];
        let writes = [
            item.post.as_mut(),
            item.put.as_mut(),
            item.patch.as_mut(),
            item.delete.as_mut(),
        ];
        for (op, write) in reads
            .into_iter()
            .map(|o| (o, false))
            .chain(writes.into_iter().map(|o| (o, true)))
        {
            let Some(op) = op else { continue };
            let responses = &mut op.responses.responses;
            responses.entry("503".into()).or_insert_with(|| {
                problem("`unavailable`: the database cannot be reached; retry after `Retry-After` seconds").into()
            });
            if write {
                responses.entry("507".into()).or_insert_with(|| {
                    problem("`storage_full`: the database's disk is full; nothing was written")
                        .into()
                });
            }
        }
    }
    openapi
}
