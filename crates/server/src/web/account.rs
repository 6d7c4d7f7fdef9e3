//! Sign-in, registration and sign-out pages.

use askama::Template;
use axum::Extension;
use axum::extract::{Form, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use shopkeep_domain::Timestamp;
use shopkeep_domain::accounts::{self, NewPassword, Username};

use super::i18n::Tr;
use super::{Ctx, Flash, Layout, WebError, WebResult, redirect, render};
use crate::AppState;
use crate::api::auth::{RegisterIn, SignIn, create_account, sign_in, signed_in};

#[derive(Template)]
#[template(path = "web/login.html")]
struct LoginPage {
    l: Layout,
    username: String,
    error: Option<String>,
}

/// `GET /login`.
pub async fn login_page(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> WebResult {
    if ctx.user.is_some() {
        return Ok(redirect(&ctx, "/"));
    }
    let l = ctx.layout(&state, ctx.tr.t("login.title"), "login").await;
    render(
        StatusCode::OK,
        &LoginPage {
            l,
            username: String::new(),
            error: None,
        },
    )
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// `POST /login`: signs in under the same failure limits as the token endpoint, then starts a
/// new session (a new id and CSRF token) for the account.
pub async fn login(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Form(form): Form<LoginForm>,
) -> WebResult {
    let tr = ctx.tr;
    let username = form.username.trim().to_string();
    let outcome = if username.is_empty() || form.password.is_empty() {
        Ok(SignIn::Invalid)
    } else {
        sign_in(
            &state,
            &username,
            &form.password,
            None,
            ctx.ip,
            &ctx.request_id,
        )
        .await
    };
    let (status, error, retry) = match outcome {
        Ok(SignIn::Ok { user, shop, .. }) => {
            let now = Timestamp::now().0;
            let (token, _) = state
                .web
                .sessions
                .rotate(Some(&ctx.session), user.id, shop.0, now)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "starting a session failed");
                    WebError::Status(StatusCode::SERVICE_UNAVAILABLE, None)
                })?;
            signed_in(&state, &user, shop, ctx.ip, &ctx.request_id, "web").await?;
            let mut r = redirect(&ctx, "/");
            r.headers_mut()
                .append(header::SET_COOKIE, state.web.cookie(&token, ctx.secure));
            return Ok(r);
        }
        Ok(SignIn::Invalid) => (
            StatusCode::UNAUTHORIZED,
            tr.t("login.invalid").to_string(),
            None,
        ),
        Ok(SignIn::NoShop) => (
            StatusCode::FORBIDDEN,
            tr.t("login.no_shop").to_string(),
            None,
        ),
        Ok(SignIn::Blocked(secs)) => (
            StatusCode::TOO_MANY_REQUESTS,
            tr.f("login.limited", &[("seconds", &secs.max(1))]),
            Some(secs.max(1)),
        ),
        Err(e) if e.status() == StatusCode::SERVICE_UNAVAILABLE => (
            StatusCode::SERVICE_UNAVAILABLE,
            tr.t("login.unavailable").to_string(),
            Some(1),
        ),
        Err(e) => return Err(e.into()),
    };
    let l = ctx.layout_with(tr.t("login.title"), "login", None);
    let mut r = render(
        status,
        &LoginPage {
            l,
            username: username.chars().take(64).collect(),
            error: Some(error),
        },
    )?;
    if let Some(s) = retry {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    Ok(r)
}

/// `POST /logout`: ends the session and returns to the sign-in page with a message.
pub async fn logout(State(state): State<AppState>, Extension(ctx): Extension<Ctx>) -> WebResult {
    if let Err(e) = state.web.sessions.destroy(&ctx.session).await {
        tracing::error!(error = %e, "ending a session failed");
        return Err(WebError::Status(StatusCode::SERVICE_UNAVAILABLE, None));
    }
    // A fresh anonymous session carries the message and the next form's CSRF token.
    let now = Timestamp::now().0;
    let cookie = match state.web.sessions.create(None, now).await {
        Ok((token, s)) => {
            let f = Flash::info(ctx.tr.t("login.signed_out"));
            let next = Ctx {
                session: s,
                ..ctx.clone()
            };
            next.flash(&state, &f).await;
            state.web.cookie(&token, ctx.secure)
        }
        Err(e) => {
            tracing::warn!(error = %e, "starting an anonymous session failed");
            state.web.clear_cookie(ctx.secure)
        }
    };
    let mut r = redirect(&ctx, "/login");
    r.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(r)
}

/// The registration form as typed, with an error per field.
#[derive(Debug, Default)]
pub struct RegisterForm {
    username: String,
    email: String,
    username_error: String,
    password_error: String,
    email_error: String,
    strength: u8,
    has_password: bool,
    error: Option<String>,
}

impl RegisterForm {
    fn strength_key(&self) -> &'static str {
        match self.strength {
            0 => "strength.0",
            1 => "strength.1",
            2 => "strength.2",
            3 => "strength.3",
            _ => "strength.4",
        }
    }
}

#[derive(Template)]
#[template(path = "web/register.html")]
struct RegisterPage {
    l: Layout,
    tr: Tr,
    f: RegisterForm,
    oob: bool,
}

#[derive(Template)]
#[template(path = "web/register_check.html")]
struct RegisterCheck {
    tr: Tr,
    f: RegisterForm,
    oob: bool,
}

/// The registration form's fields.
#[derive(Debug, Deserialize)]
pub struct RegisterFields {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    email: String,
}

/// Checks the fields; `typing` leaves empty fields alone (they are not wrong yet).
fn check(tr: Tr, fields: &RegisterFields, typing: bool) -> RegisterForm {
    let mut f = RegisterForm {
        username: fields.username.chars().take(64).collect(),
        email: fields.email.chars().take(254).collect(),
        has_password: !fields.password.is_empty(),
        ..RegisterForm::default()
    };
    let inputs: Vec<&str> = [fields.username.as_str(), fields.email.as_str()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    f.strength = accounts::password_strength(&fields.password, &inputs);
    if !(typing && fields.username.is_empty())
        && let Err(e) = Username::parse("username", fields.username.trim())
    {
        f.username_error = tr.field_error("username", e.code, &e.message);
    }
    if !(typing && fields.password.is_empty())
        && let Err(e) = NewPassword::parse("password", &fields.password, &inputs)
    {
        f.password_error = tr.field_error("password", e.code, &e.message);
    }
    let email = fields.email.trim();
    if !email.is_empty()
        && let Err(e) = accounts::parse_email("email", email)
    {
        f.email_error = tr.field_error("email", e.code, &e.message);
    }
    f
}

/// `GET /register`.
pub async fn register_page(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> WebResult {
    if ctx.user.is_some() {
        return Ok(redirect(&ctx, "/"));
    }
    let l = ctx
        .layout(&state, ctx.tr.t("register.title"), "register")
        .await;
    render(
        StatusCode::OK,
        &RegisterPage {
            l,
            tr: ctx.tr,
            f: RegisterForm::default(),
            oob: false,
        },
    )
}

/// `POST /register/check`: the field errors and password strength while typing, as HTMX
/// out-of-band swaps.
pub async fn register_check(
    Extension(ctx): Extension<Ctx>,
    Form(fields): Form<RegisterFields>,
) -> WebResult {
    render(
        StatusCode::OK,
        &RegisterCheck {
            tr: ctx.tr,
            f: check(ctx.tr, &fields, true),
            oob: true,
        },
    )
}

/// `POST /register`: creates the account (the API's rules) and goes to the sign-in page.
pub async fn register(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Form(fields): Form<RegisterFields>,
) -> Result<Response, WebError> {
    let tr = ctx.tr;
    let mut f = check(tr, &fields, false);
    let valid =
        f.username_error.is_empty() && f.password_error.is_empty() && f.email_error.is_empty();
    let status = if valid {
        let body = RegisterIn {
            username: fields.username.trim().to_string(),
            password: fields.password.clone(),
            email: Some(fields.email.trim().to_string()).filter(|e| !e.is_empty()),
            locale: None,
            currency: None,
            timezone: None,
        };
        match create_account(&state, &body).await {
            Ok(_) => {
                ctx.flash(&state, &Flash::success(tr.t("register.done")))
                    .await;
                return Ok(redirect(&ctx, "/login"));
            }
            Err(e) if e.status() == StatusCode::FORBIDDEN => {
                f.error = Some(tr.t("register.closed").to_string());
                StatusCode::FORBIDDEN
            }
            Err(e) if !e.field_errors().is_empty() => {
                for fe in e.field_errors() {
                    let text = tr.field_error(&fe.field, &fe.code, &fe.message);
                    match fe.field.as_str() {
                        "body.username" => f.username_error = text,
                        "body.password" => f.password_error = text,
                        "body.email" => f.email_error = text,
                        _ => f.error = Some(text),
                    }
                }
                e.status()
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    if f.error.is_none() {
        f.error = Some(tr.t("register.fix").to_string());
    }
    let l = ctx.layout_with(tr.t("register.title"), "register", None);
    Ok(render(
        status,
        &RegisterPage {
            l,
            tr,
            f,
            oob: false,
        },
    )?
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_reports_only_what_was_typed() {
        let typed = RegisterFields {
            username: "ab".into(),
            password: String::new(),
            email: String::new(),
        };
        let f = check(Tr::default(), &typed, true);
        assert!(!f.username_error.is_empty());
        assert!(
            f.password_error.is_empty(),
            "an empty password is not wrong yet"
        );
        let f = check(Tr::default(), &typed, false);
        assert!(!f.password_error.is_empty(), "on submit it is");
    }

    #[test]
    fn strength_grows_with_the_password() {
        let weak = check(
            Tr::default(),
            &RegisterFields {
                username: "alice".into(),
                password: "password".into(),
                email: String::new(),
            },
            true,
        );
        let strong = check(
            Tr::default(),
            &RegisterFields {
                username: "alice".into(),
                password: "Tulip-Harbor-9-Quartz".into(),
                email: String::new(),
            },
            true,
        );
        assert!(weak.strength < strong.strength);
        assert_eq!(strong.strength_key(), "strength.4");
        assert!(!weak.password_error.is_empty());
        assert!(strong.password_error.is_empty());
        assert_eq!(
            crate::web::sentence("a password has at least 8 characters"),
            "A password has at least 8 characters."
        );
    }
}
