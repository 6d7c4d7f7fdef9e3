//! Shops (tenants) and their members.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shopkeep_domain::accounts::{self, Role, Scope};
use shopkeep_domain::{Invalid, Timestamp, UserId};
use shopkeep_store::StoreError;
use shopkeep_store::accounts::{self as store, ShopRow};
use shopkeep_store::audit::AuditEntry;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::ClientIp;
use super::{Checks, audit};
use crate::auth::Principal;
use crate::extract::ApiJson;
use crate::observe::RequestId;
use crate::{ApiError, AppState, Problem};

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_shops, create_shop))
        .routes(routes!(current_shop, update_shop))
        .routes(routes!(list_members))
        .routes(routes!(set_member, remove_member))
}

/// A shop.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShopOut {
    /// Id.
    pub id: Uuid,
    /// URL-safe unique name.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Whether anyone may register into it.
    pub registration_open: bool,
    /// The shop self-registration joins.
    pub is_default: bool,
    /// RFC 3339.
    #[schema(value_type = String)]
    pub created_at: Timestamp,
}

/// Maps a stored shop.
pub fn shop_out(s: &ShopRow) -> ShopOut {
    ShopOut {
        id: s.id,
        slug: s.slug.clone(),
        name: s.name.clone(),
        registration_open: s.registration_open,
        is_default: s.is_default,
        created_at: Timestamp(s.created_at),
    }
}

/// A shop with the caller's role in it.
#[derive(Debug, Serialize, ToSchema)]
pub struct MyShopOut {
    /// The shop.
    #[serde(flatten)]
    pub shop: ShopOut,
    /// The caller's role.
    pub role: String,
}

/// The shops the caller belongs to.
#[utoipa::path(get, path = "/api/v1/shops", tag = "shops", security(("bearer" = [])),
    responses((status = 200, description = "Memberships", body = Vec<MyShopOut>)))]
pub async fn list_shops(
    State(state): State<AppState>,
    p: Principal,
) -> Result<Json<Vec<MyShopOut>>, ApiError> {
    let rows = store::shops_of_user(&state.db, p.user()?).await?;
    Ok(Json(
        rows.iter()
            .map(|(s, r)| MyShopOut {
                shop: shop_out(s),
                role: r.clone(),
            })
            .collect(),
    ))
}

/// A new shop.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShopIn {
    /// 3-40 lower-case letters, digits and dashes.
    pub slug: String,
    /// 1-100 characters.
    pub name: String,
}

fn parse_slug(s: &str) -> Result<String, Invalid> {
    let ok = (3..=40).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s.to_string())
    } else {
        Err(Invalid::new(
            "slug",
            "invalid",
            "3-40 lower-case letters, digits and dashes",
        ))
    }
}

fn parse_name(s: &str) -> Result<String, Invalid> {
    let t = s.trim();
    if t.is_empty() || t.chars().count() > 100 || t.chars().any(char::is_control) {
        Err(Invalid::new(
            "name",
            "invalid",
            "1-100 characters, no control characters",
        ))
    } else {
        Ok(t.to_string())
    }
}

/// Creates a shop with the caller as owner (platform admins only).
#[utoipa::path(post, path = "/api/v1/shops", tag = "shops", security(("bearer" = [])), request_body = ShopIn,
    responses((status = 201, description = "Created", body = ShopOut),
        (status = 403, description = "Needs platform:admin", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Slug taken", body = Problem, content_type = "application/problem+json")))]
pub async fn create_shop(
    State(state): State<AppState>,
    p: Principal,
    ClientIp(ip): ClientIp,
    Extension(rid): Extension<RequestId>,
    ApiJson(body): ApiJson<ShopIn>,
) -> Result<(StatusCode, Json<ShopOut>), ApiError> {
    p.require(Scope::PlatformAdmin)?;
    let user = p.user()?;
    let mut c = Checks::default();
    let slug = c.check(parse_slug(&body.slug));
    let name = c.check(parse_name(&body.name));
    c.finish()?;
    let (Some(slug), Some(name)) = (slug, name) else {
        unreachable!("checked above")
    };
    let shop = match store::create_shop(&state.db, &slug, &name, user).await {
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::conflict(
                "slug_taken",
                "a shop with this slug exists",
            ));
        }
        other => other?,
    };
    audit(
        &state,
        AuditEntry {
            shop: Some(shopkeep_domain::ShopId(shop.id)),
            actor: Some(user),
            action: "shop.created",
            target: Some(shop.slug.clone()),
            ip: ip.map(|i| i.to_string()),
            detail: json!({ "name": shop.name }),
            request_id: Some(rid.0),
        },
    )
    .await;
    Ok((StatusCode::CREATED, Json(shop_out(&shop))))
}

/// The shop the caller is acting in.
#[utoipa::path(get, path = "/api/v1/shop", tag = "shops", security(("bearer" = [])), responses((status = 200, description = "The shop", body = ShopOut)))]
pub async fn current_shop(
    State(state): State<AppState>,
    p: Principal,
) -> Result<Json<ShopOut>, ApiError> {
    Ok(Json(shop_out(&store::get_shop(&state.db, p.scope).await?)))
}

/// Shop settings to change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShopPatch {
    /// Display name.
    pub name: Option<String>,
    /// Open or close self-registration.
    pub registration_open: Option<bool>,
}

/// Changes the current shop's settings (`shop:admin`).
#[utoipa::path(patch, path = "/api/v1/shop", tag = "shops", security(("bearer" = [])), request_body = ShopPatch,
    responses((status = 200, description = "Updated", body = ShopOut), (status = 403, description = "Needs shop:admin", body = Problem, content_type = "application/problem+json")))]
pub async fn update_shop(
    State(state): State<AppState>,
    p: Principal,
    Extension(rid): Extension<RequestId>,
    ApiJson(body): ApiJson<ShopPatch>,
) -> Result<Json<ShopOut>, ApiError> {
    p.require(Scope::ShopAdmin)?;
    let mut c = Checks::default();
    let name = body.name.as_deref().and_then(|n| c.check(parse_name(n)));
    c.finish()?;
    let shop =
        store::update_shop(&state.db, p.scope, name.as_deref(), body.registration_open).await?;
    audit(
        &state,
        AuditEntry {
            shop: Some(p.shop()),
            actor: p.user,
            action: "shop.updated",
            detail: json!({ "name": name, "registration_open": body.registration_open }),
            request_id: Some(rid.0),
            ..AuditEntry::default()
        },
    )
    .await;
    Ok(Json(shop_out(&shop)))
}

/// A member of the shop.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberOut {
    /// User id.
    pub user_id: Uuid,
    /// Username.
    pub username: String,
    /// Role.
    pub role: String,
    /// RFC 3339.
    #[schema(value_type = String)]
    pub joined_at: Timestamp,
}

/// Members of the current shop (`shop:admin`).
#[utoipa::path(get, path = "/api/v1/shop/members", tag = "shops", security(("bearer" = [])), responses((status = 200, description = "Members", body = Vec<MemberOut>)))]
pub async fn list_members(
    State(state): State<AppState>,
    p: Principal,
) -> Result<Json<Vec<MemberOut>>, ApiError> {
    p.require(Scope::ShopAdmin)?;
    let rows = store::members(&state.db, p.scope).await?;
    Ok(Json(
        rows.into_iter()
            .map(|m| MemberOut {
                user_id: m.user_id,
                username: m.username,
                role: m.role,
                joined_at: Timestamp(m.created_at),
            })
            .collect(),
    ))
}

/// The role to give.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleIn {
    /// `customer`, `staff`, `admin` or `owner`.
    pub role: String,
}

async fn user_by_name(state: &AppState, username: &str) -> Result<UserId, ApiError> {
    let user = store::find_user(&state.db, &accounts::fold(username)).await?;
    user.map(|u| UserId(u.id))
        .ok_or_else(|| ApiError::not_found("no such user"))
}

/// Admins and owners are granted and removed by owners only; the last owner stays.
async fn guard_role_change(
    state: &AppState,
    p: &Principal,
    before: Option<Role>,
    after: Option<Role>,
) -> Result<(), ApiError> {
    let touches_high = [before, after]
        .into_iter()
        .flatten()
        .any(|r| r >= Role::Admin);
    if touches_high {
        p.require(Scope::ShopOwner)?;
    }
    if before == Some(Role::Owner)
        && after != Some(Role::Owner)
        && store::owner_count(&state.db, p.scope).await? <= 1
    {
        return Err(ApiError::conflict(
            "last_owner",
            "a shop keeps at least one owner",
        ));
    }
    Ok(())
}

/// Adds a user to the current shop or changes their role (`shop:admin`; `shop:owner` for admin and owner).
#[utoipa::path(put, path = "/api/v1/shop/members/{username}", tag = "shops", security(("bearer" = [])), request_body = RoleIn,
    params(("username" = String, Path, description = "The user")),
    responses((status = 200, description = "Member", body = MemberOut), (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json")))]
pub async fn set_member(
    State(state): State<AppState>,
    p: Principal,
    Path(username): Path<String>,
    Extension(rid): Extension<RequestId>,
    ApiJson(body): ApiJson<RoleIn>,
) -> Result<Json<MemberOut>, ApiError> {
    p.require(Scope::ShopAdmin)?;
    let role: Role = body.role.parse().map_err(|()| {
        ApiError::validation(vec![crate::FieldError::new(
            "body.role",
            "invalid",
            "one of customer, staff, admin, owner",
        )])
    })?;
    let user = user_by_name(&state, &username).await?;
    let before = store::role_in(&state.db, p.scope, user).await?;
    guard_role_change(&state, &p, before, Some(role)).await?;
    store::set_role(&state.db, p.scope, user, role).await?;
    audit(
        &state,
        AuditEntry {
            shop: Some(p.shop()),
            actor: p.user,
            action: if before.is_some() {
                "member.role_changed"
            } else {
                "member.added"
            },
            target: Some(username.clone()),
            detail: json!({ "from": before.map(Role::as_str), "to": role.as_str() }),
            request_id: Some(rid.0),
            ..AuditEntry::default()
        },
    )
    .await;
    let m = store::members(&state.db, p.scope)
        .await?
        .into_iter()
        .find(|m| m.user_id == user.0)
        .ok_or(StoreError::NotFound)?;
    Ok(Json(MemberOut {
        user_id: m.user_id,
        username: m.username,
        role: m.role,
        joined_at: Timestamp(m.created_at),
    }))
}

/// Removes a user from the current shop.
#[utoipa::path(delete, path = "/api/v1/shop/members/{username}", tag = "shops", security(("bearer" = [])),
    params(("username" = String, Path, description = "The user")),
    responses((status = 204, description = "Removed"), (status = 404, description = "Not a member", body = Problem, content_type = "application/problem+json")))]
pub async fn remove_member(
    State(state): State<AppState>,
    p: Principal,
    Path(username): Path<String>,
    Extension(rid): Extension<RequestId>,
) -> Result<StatusCode, ApiError> {
    p.require(Scope::ShopAdmin)?;
    let user = user_by_name(&state, &username).await?;
    let before = store::role_in(&state.db, p.scope, user)
        .await?
        .ok_or_else(|| ApiError::not_found("not a member"))?;
    guard_role_change(&state, &p, Some(before), None).await?;
    store::remove_member(&state.db, p.scope, user).await?;
    audit(
        &state,
        AuditEntry {
            shop: Some(p.shop()),
            actor: p.user,
            action: "member.removed",
            target: Some(username),
            detail: json!({ "role": before.as_str() }),
            request_id: Some(rid.0),
            ..AuditEntry::default()
        },
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
