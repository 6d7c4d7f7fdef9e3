//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::OpenApi;

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
    tags(
        (name = "health", description = "Liveness and readiness probes"),
    )
)]
pub struct ApiDoc;
