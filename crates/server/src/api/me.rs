//! The signed-in user: profile and preferences.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use shopkeep_domain::accounts;
use shopkeep_domain::{Timestamp, UserId};
use shopkeep_store::accounts::{self as store, PreferencesPatch, UserRow};
use shopkeep_store::notifications;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::Checks;
use super::shops::{ShopOut, shop_out};
use crate::auth::Principal;
use crate::extract::{ApiJson, ApiQuery};
use crate::{ApiError, AppState, Problem};

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me, update_me))
        .routes(routes!(notifications))
}

/// A user as shown to themselves and to shop admins.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserOut {
    /// Id.
    pub id: Uuid,
    /// As typed at registration.
    pub username: String,
    /// Email, when given.
    pub email: Option<String>,
    /// Platform administrator.
    pub is_admin: bool,
    /// Preferred locale.
    pub locale: String,
    /// Preferred currency.
    pub currency: String,
    /// Preferred time zone.
    pub timezone: String,
    /// RFC 3339.
    #[schema(value_type = String)]
    pub created_at: Timestamp,
    /// RFC 3339.
    #[schema(value_type = Option<String>)]
    pub last_login_at: Option<Timestamp>,
}

/// Maps a stored user (never its password hash).
pub fn user_out(u: &UserRow) -> UserOut {
    UserOut {
        id: u.id,
        username: u.username.clone(),
        email: u.email.clone(),
        is_admin: u.is_admin,
        locale: u.locale.clone(),
        currency: u.currency.clone(),
        timezone: u.timezone.clone(),
        created_at: Timestamp(u.created_at),
        last_login_at: u.last_login_at.map(Timestamp),
    }
}

/// The caller with their current shop, role and scopes.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeOut {
    /// The user.
    #[serde(flatten)]
    pub user: UserOut,
    /// The shop this token acts in.
    pub shop: ShopOut,
    /// Role in that shop.
    pub role: String,
    /// Scopes of this token.
    pub scopes: Vec<String>,
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, description = "The caller", body = MeOut), (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json")))]
pub async fn me(State(state): State<AppState>, p: Principal) -> Result<Json<MeOut>, ApiError> {
    let user_id = p.user()?;
    me_out(&state, &p, user_id).await.map(Json)
}

async fn me_out(state: &AppState, p: &Principal, user_id: UserId) -> Result<MeOut, ApiError> {
    let (user, shop, role) = store::user_in_shop(&state.db, p.scope, user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    Ok(MeOut {
        user: user_out(&user),
        shop: shop_out(&shop),
        role: role.unwrap_or_default(),
        scopes: p.scopes.iter().map(|s| s.as_str().to_string()).collect(),
    })
}

/// Preferences to change; absent fields stay as they are, `email: null` clears it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MePatch {
    /// Email address, or null to clear.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub email: Option<Option<String>>,
    /// Locale.
    pub locale: Option<String>,
    /// Currency.
    pub currency: Option<String>,
    /// IANA time zone.
    pub timezone: Option<String>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

/// Changes profile preferences.
#[utoipa::path(patch, path = "/api/v1/me", tag = "auth", security(("bearer" = [])), request_body = MePatch,
    responses((status = 200, description = "Updated", body = MeOut), (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json")))]
pub async fn update_me(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(body): ApiJson<MePatch>,
) -> Result<Json<MeOut>, ApiError> {
    let user_id = p.user()?;
    let mut c = Checks::default();
    let patch = PreferencesPatch {
        email: match body.email {
            Some(Some(e)) => c
                .check(accounts::parse_email("email", &e))
                .map(|e| Some(Some(e)))
                .unwrap_or(None),
            Some(None) => Some(None),
            None => None,
        },
        locale: body
            .locale
            .and_then(|v| c.check(accounts::parse_locale("locale", &v))),
        currency: body
            .currency
            .and_then(|v| c.check(accounts::parse_currency("currency", &v))),
        timezone: body
            .timezone
            .and_then(|v| c.check(accounts::parse_timezone("timezone", &v))),
    };
    c.finish()?;
    store::update_preferences(&state.db, user_id, &patch).await?;
    me_out(&state, &p, user_id).await.map(Json)
}

/// A notice to the caller (an order decided, ...).
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationOut {
    /// Id.
    pub id: Uuid,
    /// `order.approved`, `order.rejected`.
    pub kind: String,
    /// One line.
    pub subject: String,
    /// Text.
    pub body: String,
    /// What it is about (an order id).
    pub resource_id: Option<String>,
    /// RFC 3339.
    #[schema(value_type = String)]
    pub created_at: Timestamp,
}

/// A page of notices.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationPage {
    /// Newest first.
    pub items: Vec<NotificationOut>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// Paging of notices.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct NotificationQuery {
    /// 1-100, default 20.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The caller's notices in the current shop, newest first (written by background jobs, for
/// example when an admin decides one of their orders).
#[utoipa::path(get, path = "/api/v1/me/notifications", tag = "auth", security(("bearer" = [])), params(NotificationQuery),
    responses((status = 200, description = "A page", body = NotificationPage),
        (status = 400, description = "Bad paging", body = Problem, content_type = "application/problem+json")))]
pub async fn notifications(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<NotificationQuery>,
) -> Result<Json<NotificationPage>, ApiError> {
    let user = p.user()?;
    let (_, limit, before) = super::orders::page_params(None, q.limit, q.cursor.as_deref())?;
    let mut rows = notifications::for_user(&state.db, p.scope, user, before, limit + 1).await?;
    let n = usize::try_from(limit).unwrap_or(20);
    let more = rows.len() > n;
    rows.truncate(n);
    Ok(Json(NotificationPage {
        next_cursor: if more {
            rows.last().map(|r| shopkeep_domain::cursor::encode(&r.id))
        } else {
            None
        },
        items: rows
            .into_iter()
            .map(|r| NotificationOut {
                id: r.id,
                kind: r.kind,
                subject: r.subject,
                body: r.body,
                resource_id: r.resource_id,
                created_at: Timestamp(r.created_at),
            })
            .collect(),
    }))
}
