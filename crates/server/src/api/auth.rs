//! Registration, OAuth2 token endpoint (password and refresh grants), logout, introspection,
//! shop switching and the public keys.

use std::net::IpAddr;

use axum::extract::{Form, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shopkeep_domain::accounts::{self, NewPassword, Role, Scope, Username, scopes_for};
use shopkeep_domain::{ShopId, Timestamp, UserId};
use shopkeep_store::audit::AuditEntry;
use shopkeep_store::{ShopScope, StoreError, accounts as store, tokens as token_store};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::me::{UserOut, user_out};
use super::{Checks, audit};
use crate::auth::keys::Jwks;
use crate::auth::principal::{Credential, Principal};
use crate::auth::tokens::{Claims, Issued, Subject};
use crate::crypto::sha256;
use crate::extract::ApiJson;
use crate::observe::RequestId;
use crate::{ApiError, AppState, Problem};

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(token))
        .routes(routes!(logout))
        .routes(routes!(verify))
        .routes(routes!(switch_shop))
        .routes(routes!(jwks))
}

/// A new account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterIn {
    /// 4-20 ASCII letters and digits; unique ignoring case.
    #[schema(min_length = 4, max_length = 20, pattern = "^[A-Za-z0-9]{4,20}$")]
    pub username: String,
    /// 8-128 characters, not trivially guessable.
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
    /// Optional email address.
    pub email: Option<String>,
    /// Preferred locale (default `en`).
    pub locale: Option<String>,
    /// Preferred currency (default `USD`).
    pub currency: Option<String>,
    /// Preferred IANA time zone (default `UTC`).
    pub timezone: Option<String>,
}

/// Creates an account in the default shop as a customer.
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", request_body = RegisterIn,
    responses(
        (status = 201, description = "Created", body = UserOut),
        (status = 403, description = "Registration is closed", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Username taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn register(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RegisterIn>,
) -> Result<Response, ApiError> {
    let user = create_account(&state, &body).await?;
    let mut res = (StatusCode::CREATED, Json(user_out(&user))).into_response();
    if let Ok(v) = HeaderValue::from_str("/api/v1/me") {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// Validates a registration (every bad field named) and creates the account as a customer of
/// the default shop; the API and the web page share it.
pub(crate) async fn create_account(
    state: &AppState,
    body: &RegisterIn,
) -> Result<store::UserRow, ApiError> {
    let mut c = Checks::default();
    let username = c.check(Username::parse("username", &body.username));
    let email = match body.email.as_deref().filter(|e| !e.trim().is_empty()) {
        Some(e) => c.check(accounts::parse_email("email", e)),
        None => None,
    };
    let inputs: Vec<&str> = [Some(body.username.as_str()), body.email.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    let password = c.check(NewPassword::parse("password", &body.password, &inputs));
    let locale = c.check(accounts::parse_locale(
        "locale",
        body.locale.as_deref().unwrap_or("en"),
    ));
    let currency = c.check(accounts::parse_currency(
        "currency",
        body.currency.as_deref().unwrap_or("USD"),
    ));
    let timezone = c.check(accounts::parse_timezone(
        "timezone",
        body.timezone.as_deref().unwrap_or("UTC"),
    ));
    c.finish()?;
    let (Some(username), Some(password), Some(locale), Some(currency), Some(timezone)) =
        (username, password, locale, currency, timezone)
    else {
        return Err(ApiError::internal(anyhow::anyhow!(
            "validated fields missing"
        )));
    };
    let shop = store::ensure_default_shop(&state.db).await?;
    if !shop.registration_open {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "registration_closed",
            "this shop does not accept new registrations",
        ));
    }
    let hash = state.auth.hasher.hash(password.expose()).await?;
    let new = store::NewUser {
        username: username.as_str().to_string(),
        username_folded: username.folded(),
        password_hash: hash,
        email,
        is_admin: false,
        locale,
        currency,
        timezone,
    };
    let user = match store::create_user(&state.db, &new, Some((ShopId(shop.id), Role::Customer)))
        .await
    {
        Err(StoreError::Conflict(_)) => {
            return Err(
                ApiError::conflict("username_taken", "this username is taken").with_errors(vec![
                    crate::FieldError::new("body.username", "taken", "this username is taken"),
                ]),
            );
        }
        other => other?,
    };
    Ok(user)
}

/// OAuth 2.0 token request (RFC 6749 4.3 and 6), form-encoded.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenIn {
    /// `password` or `refresh_token`.
    pub grant_type: Option<String>,
    /// For the password grant.
    pub username: Option<String>,
    /// For the password grant.
    pub password: Option<String>,
    /// For the refresh grant.
    pub refresh_token: Option<String>,
    /// Optional space-separated subset of the role's scopes.
    pub scope: Option<String>,
    /// Optional shop id to sign in to (default: the default shop, else the first membership).
    pub shop: Option<Uuid>,
}

/// RFC 6749 5.1 success body.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenOut {
    /// The JWT.
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Opaque; rotated on every use.
    pub refresh_token: String,
    /// Space-separated granted scopes.
    pub scope: String,
}

/// RFC 6749 5.2 error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_grant`, `unsupported_grant_type`, `invalid_scope`.
    pub error: &'static str,
    /// A sentence for people.
    pub error_description: String,
}

fn oauth_error(error: &'static str, description: impl Into<String>) -> Response {
    let mut res = (
        StatusCode::BAD_REQUEST,
        Json(OAuthError {
            error,
            error_description: description.into(),
        }),
    )
        .into_response();
    no_store(res.headers_mut());
    res
}

fn no_store(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

fn token_response(i: Issued) -> Response {
    let mut res = Json(TokenOut {
        access_token: i.access_token,
        token_type: "bearer",
        expires_in: i.expires_in,
        refresh_token: i.refresh_token,
        scope: i.scope,
    })
    .into_response();
    no_store(res.headers_mut());
    res
}

/// Client IP as resolved by the auth settings, for limits and the audit log.
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp
where
    AppState: axum::extract::FromRef<S>,
{
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let app = <AppState as axum::extract::FromRef<S>>::from_ref(state);
        Ok(ClientIp(crate::auth::ip::client_ip(
            parts,
            &app.auth.opts.trusted_proxies,
        )))
    }
}

/// Issues tokens: `grant_type=password` (username, password) or `grant_type=refresh_token`.
#[utoipa::path(post, path = "/api/v1/auth/token", tag = "auth",
    request_body(content = TokenIn, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Tokens", body = TokenOut),
        (status = 400, description = "RFC 6749 error", body = OAuthError),
        (status = 429, description = "Too many failed sign-ins; see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The login limiter is unavailable (fails closed)", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn token(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Extension(rid): Extension<RequestId>,
    req: Request,
) -> Result<Response, ApiError> {
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Ok(oauth_error(
            "invalid_request",
            "send the request as application/x-www-form-urlencoded",
        ));
    }
    let Ok(Form(form)) = Form::<TokenIn>::from_request(req, &state).await else {
        return Ok(oauth_error("invalid_request", "the form could not be read"));
    };
    let ctx = Ctx {
        ip,
        request_id: rid.0,
    };
    match form.grant_type.as_deref() {
        Some("password") => password_grant(&state, form, &ctx).await,
        Some("refresh_token") => refresh_grant(&state, form, &ctx).await,
        Some(_) => Ok(oauth_error(
            "unsupported_grant_type",
            "grant_type must be password or refresh_token",
        )),
        None => Ok(oauth_error("invalid_request", "grant_type is required")),
    }
}

struct Ctx {
    ip: Option<IpAddr>,
    request_id: String,
}

impl Ctx {
    fn entry(&self, action: &'static str) -> AuditEntry {
        entry(self.ip, &self.request_id, action)
    }
}

async fn password_grant(state: &AppState, form: TokenIn, ctx: &Ctx) -> Result<Response, ApiError> {
    let (Some(username), Some(password)) = (form.username.as_deref(), form.password.as_deref())
    else {
        return Ok(oauth_error(
            "invalid_request",
            "username and password are required",
        ));
    };
    let (user, shop, role) = match sign_in(
        state,
        username,
        password,
        form.shop,
        ctx.ip,
        &ctx.request_id,
    )
    .await?
    {
        SignIn::Ok { user, shop, role } => (user, shop, role),
        SignIn::Blocked(secs) => return Err(too_many_attempts(secs)),
        SignIn::Invalid => {
            return Ok(oauth_error("invalid_grant", "invalid username or password"));
        }
        SignIn::NoShop => {
            return Ok(oauth_error(
                "invalid_grant",
                "this account is not a member of that shop",
            ));
        }
    };
    let scopes = match narrow(scopes_for(role, user.is_admin), form.scope.as_deref()) {
        Ok(s) => s,
        Err(bad) => {
            return Ok(oauth_error(
                "invalid_scope",
                format!("scope {bad} is not available to this account"),
            ));
        }
    };
    let user_id = UserId(user.id);
    let subject = Subject {
        user: user_id,
        username: user.username.clone(),
        is_admin: user.is_admin,
        shop,
        scopes,
    };
    let issued = state
        .auth
        .issue(&subject, None, form.scope.as_deref())
        .await?;
    signed_in(state, &user, shop, ctx.ip, &ctx.request_id, "token").await?;
    Ok(token_response(issued))
}

/// 429 with the seconds left, for a sign-in refused by the failure limit.
pub(crate) fn too_many_attempts(secs: u64) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        format!("too many failed sign-in attempts; try again in {secs} seconds"),
    )
    .retry_after(secs.max(1))
}

/// What a password sign-in came to.
pub(crate) enum SignIn {
    /// The password matched: the account, and the shop and role to sign in to.
    Ok {
        /// The account.
        user: Box<store::UserRow>,
        /// The shop.
        shop: ShopId,
        /// The role there.
        role: Role,
    },
    /// Unknown username or wrong password; the two are not told apart.
    Invalid,
    /// Too many recent failures for the username or the address: seconds to wait.
    Blocked(u64),
    /// The account is not a member of the asked shop (or of any shop).
    NoShop,
}

/// Checks a username and password under the failure limits (per username and per address),
/// recording a failure and its audit entry; the token endpoint and the web sign-in share it.
/// A limiter that cannot be reached refuses every sign-in (503).
pub(crate) async fn sign_in(
    state: &AppState,
    username: &str,
    password: &str,
    asked_shop: Option<Uuid>,
    ip: Option<IpAddr>,
    request_id: &str,
) -> Result<SignIn, ApiError> {
    let folded = accounts::fold(username);
    let keys = [
        format!("u:{folded}"),
        ip.map_or_else(|| "ip:unknown".into(), |i| format!("ip:{i}")),
    ];
    for key in &keys {
        let blocked = state.auth.limiter.check(key).await.map_err(|e| {
            tracing::error!(error = %e, "login limiter unavailable; refusing logins");
            ApiError::unavailable("sign-in is temporarily unavailable; retry shortly")
        })?;
        if let Some(wait) = blocked {
            return Ok(SignIn::Blocked(
                wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            ));
        }
    }
    let user = store::find_user(&state.db, &folded).await?;
    let verified = state
        .auth
        .hasher
        .verify(password, user.as_ref().map(|u| u.password_hash.as_str()))
        .await?;
    let known = user.is_some();
    let Some(user) = user.filter(|_| verified.ok) else {
        for key in &keys {
            if let Err(e) = state.auth.limiter.record_failure(key).await {
                tracing::error!(error = %e, "recording a failed login failed");
            }
        }
        let mut e = entry(ip, request_id, "login.failed");
        e.target = Some(username.chars().take(64).collect());
        e.detail = json!({ "reason": if known { "bad_password" } else { "unknown_user" } });
        audit(state, e).await;
        return Ok(SignIn::Invalid);
    };
    let user_id = UserId(user.id);
    if verified.needs_rehash {
        let new_hash = state.auth.hasher.hash(password).await?;
        store::set_password_hash(&state.db, user_id, &new_hash).await?;
    }
    Ok(match pick_shop(state, user_id, asked_shop).await? {
        Some((shop, role)) => SignIn::Ok {
            user: Box::new(user),
            shop,
            role,
        },
        None => SignIn::NoShop,
    })
}

/// Records a completed sign-in (`via` is `token` or `web`): the last-login time and the audit entry.
pub(crate) async fn signed_in(
    state: &AppState,
    user: &store::UserRow,
    shop: ShopId,
    ip: Option<IpAddr>,
    request_id: &str,
    via: &'static str,
) -> Result<(), ApiError> {
    store::touch_login(&state.db, UserId(user.id)).await?;
    let mut e = entry(ip, request_id, "login.succeeded");
    e.shop = Some(shop);
    e.actor = Some(UserId(user.id));
    e.target = Some(user.username.clone());
    e.detail = json!({ "via": via });
    audit(state, e).await;
    Ok(())
}

fn entry(ip: Option<IpAddr>, request_id: &str, action: &'static str) -> AuditEntry {
    AuditEntry {
        action,
        ip: ip.map(|i| i.to_string()),
        request_id: Some(request_id.to_string()),
        detail: json!({}),
        ..AuditEntry::default()
    }
}

/// The shop to sign in to and the role there.
async fn pick_shop(
    state: &AppState,
    user: UserId,
    asked: Option<Uuid>,
) -> Result<Option<(ShopId, Role)>, ApiError> {
    if let Some(shop) = asked {
        return Ok(store::membership(&state.db, ShopId(shop), user)
            .await?
            .map(|r| (ShopId(shop), r)));
    }
    let shops = store::shops_of_user(&state.db, user).await?;
    let pick = shops
        .iter()
        .find(|(s, _)| s.is_default)
        .or_else(|| shops.first());
    Ok(pick.and_then(|(s, r)| r.parse().ok().map(|r| (ShopId(s.id), r))))
}

/// Keeps only the asked scopes; `Err(name)` for one the role does not grant.
fn narrow(granted: Vec<Scope>, asked: Option<&str>) -> Result<Vec<Scope>, String> {
    let Some(asked) = asked.filter(|a| !a.trim().is_empty()) else {
        return Ok(granted);
    };
    let mut out = Vec::new();
    for name in asked.split_whitespace() {
        match name.parse::<Scope>() {
            Ok(s) if granted.contains(&s) => out.push(s),
            _ => return Err(name.to_string()),
        }
    }
    Ok(out)
}

async fn refresh_grant(state: &AppState, form: TokenIn, ctx: &Ctx) -> Result<Response, ApiError> {
    let Some(presented) = form.refresh_token.as_deref() else {
        return Ok(oauth_error("invalid_request", "refresh_token is required"));
    };
    let invalid = || oauth_error("invalid_grant", "the refresh token is not valid");
    let Some(row) = token_store::find_refresh(&state.db, &sha256(presented.as_bytes())).await?
    else {
        return Ok(invalid());
    };
    if row.revoked_at.is_some() || row.expires_at <= Timestamp::now().0 {
        return Ok(invalid());
    }
    // A token used twice means it leaked (or a client raced itself): end the whole login.
    if row.used_at.is_some() || !token_store::consume_refresh(&state.db, row.id).await? {
        let n = token_store::revoke_family(&state.db, row.family_id).await?;
        let mut e = ctx.entry("token.reuse_detected");
        e.shop = Some(ShopId(row.shop_id));
        e.actor = Some(UserId(row.user_id));
        e.detail = json!({ "family": row.family_id, "revoked": n });
        audit(state, e).await;
        return Ok(invalid());
    }
    let (user_id, shop) = (UserId(row.user_id), ShopId(row.shop_id));
    let Some(user) = store::get_user(&state.db, user_id).await? else {
        return Ok(invalid());
    };
    let Some(role) = store::membership(&state.db, shop, user_id).await? else {
        return Ok(invalid());
    };
    let Ok(scopes) = narrow(scopes_for(role, user.is_admin), row.scope.as_deref()) else {
        return Ok(oauth_error(
            "invalid_scope",
            "the scopes of this login are no longer granted",
        ));
    };
    let subject = Subject {
        user: user_id,
        username: user.username,
        is_admin: user.is_admin,
        shop,
        scopes,
    };
    Ok(token_response(
        state
            .auth
            .issue(&subject, Some(row.family_id), row.scope.as_deref())
            .await?,
    ))
}

/// Revokes the access token (until it expires) and its whole refresh family.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204, description = "Logged out"), (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json")))]
#[tracing::instrument(skip_all)]
pub async fn logout(
    State(state): State<AppState>,
    principal: Principal,
    ClientIp(ip): ClientIp,
    Extension(rid): Extension<RequestId>,
) -> Result<StatusCode, ApiError> {
    let Credential::Token { jti, sid, exp } = principal.credential else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_a_session",
            "API keys are revoked, not logged out",
        ));
    };
    let expires = Timestamp::from_unix_seconds(exp);
    token_store::revoke_access(&state.db, jti, expires).await?;
    state.auth.revoked.insert(jti, expires.0);
    let n = token_store::revoke_family(&state.db, sid).await?;
    audit(
        &state,
        AuditEntry {
            shop: Some(principal.shop()),
            actor: principal.user,
            action: "logout",
            target: principal.username,
            ip: ip.map(|i| i.to_string()),
            detail: json!({ "jti": jti, "refresh_tokens_revoked": n }),
            request_id: Some(rid.0),
        },
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Introspection for other services (RFC 7662 style).
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyOut {
    /// Whether the token is valid now.
    pub active: bool,
    /// Its claims when active.
    #[serde(flatten)]
    pub claims: Option<Claims>,
}

/// Tells whether the bearer token is active, with its claims.
#[utoipa::path(get, path = "/api/v1/auth/verify", tag = "auth", security(("bearer" = [])),
    responses((status = 200, description = "Active or not", body = VerifyOut), (status = 401, description = "No bearer token", body = Problem, content_type = "application/problem+json")))]
pub async fn verify(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<VerifyOut>, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_string())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send Authorization: Bearer <token>",
            )
            .www_authenticate()
        })?;
    let claims = state.auth.verify_access(&token).await.ok();
    Ok(Json(VerifyOut {
        active: claims.is_some(),
        claims,
    }))
}

/// Which shop to switch to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchShopIn {
    /// A shop the user is a member of.
    pub shop_id: Uuid,
}

/// Issues a new token pair for another shop the user belongs to.
#[utoipa::path(post, path = "/api/v1/auth/switch-shop", tag = "auth", security(("bearer" = [])), request_body = SwitchShopIn,
    responses((status = 200, description = "Tokens for the other shop", body = TokenOut), (status = 404, description = "Not a member of that shop", body = Problem, content_type = "application/problem+json")))]
pub async fn switch_shop(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<SwitchShopIn>,
) -> Result<Response, ApiError> {
    let user_id = principal.user()?;
    let user = store::get_user(&state.db, user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    let role = store::role_in(
        &state.db,
        ShopScope::verified(ShopId(body.shop_id)),
        user_id,
    )
    .await?
    .ok_or_else(|| ApiError::not_found("no such shop"))?;
    let subject = Subject {
        user: user_id,
        username: user.username,
        is_admin: user.is_admin,
        shop: ShopId(body.shop_id),
        scopes: scopes_for(role, user.is_admin),
    };
    Ok(token_response(
        state.auth.issue(&subject, None, None).await?,
    ))
}

/// Public keys that verify access tokens (RFC 7517).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth", responses((status = 200, description = "JWKS", body = Jwks)))]
pub async fn jwks(State(state): State<AppState>) -> Response {
    let mut res = Json(state.auth.keys.jwks()).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    res
}
