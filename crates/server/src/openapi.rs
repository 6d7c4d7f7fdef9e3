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
