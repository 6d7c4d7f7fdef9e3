//! Users, shops and memberships.

use shopkeep_domain::accounts::Role;
use shopkeep_domain::{ShopId, Timestamp, UserId};
use uuid::Uuid;

use crate::{Db, ShopScope, StoreError, on_pool};

/// A stored user.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    /// Id.
    pub id: Uuid,
    /// As typed at registration.
    pub username: String,
    /// Password hash string (says its algorithm).
    pub password_hash: String,
    /// Optional email.
    pub email: Option<String>,
    /// Platform administrator.
    pub is_admin: bool,
    /// Preferred locale.
    pub locale: String,
    /// Preferred currency.
    pub currency: String,
    /// Preferred time zone.
    pub timezone: String,
    /// Microseconds since the epoch.
    pub created_at: i64,
    /// Microseconds since the epoch.
    pub last_login_at: Option<i64>,
}

/// A new user to insert.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// As typed.
    pub username: String,
    /// Case-folded for uniqueness.
    pub username_folded: String,
    /// Hash string.
    pub password_hash: String,
    /// Optional email.
    pub email: Option<String>,
    /// Platform administrator.
    pub is_admin: bool,
    /// Preferred locale.
    pub locale: String,
    /// Preferred currency.
    pub currency: String,
    /// Preferred time zone.
    pub timezone: String,
}

/// A stored shop.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ShopRow {
    /// Id.
    pub id: Uuid,
    /// URL-safe unique name.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Whether anyone may register into it as a customer.
    pub registration_open: bool,
    /// The shop self-registration joins.
    pub is_default: bool,
    /// Microseconds since the epoch.
    pub created_at: i64,
}

/// A member of a shop with the user's name.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MemberRow {
    /// The user.
    pub user_id: Uuid,
    /// Their username.
    pub username: String,
    /// Role name.
    pub role: String,
    /// Microseconds since the epoch.
    pub created_at: i64,
}

const USER_COLUMNS: &str = "id, username, password_hash, email, is_admin, locale, currency, timezone, created_at, last_login_at";

/// Inserts a user and, when `shop` is given, their membership, in one transaction.
/// A taken username answers `Conflict("username")`.
pub async fn create_user(
    db: &Db,
    u: &NewUser,
    shop: Option<(ShopId, Role)>,
) -> Result<UserRow, StoreError> {
    let id = UserId::new();
    let now = Timestamp::now().0;
    let res: Result<(), StoreError> = on_pool!(db, pool => async {
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO users (id, username, username_folded, password_hash, email, is_admin, locale, currency, timezone, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(id.0).bind(&u.username).bind(&u.username_folded).bind(&u.password_hash).bind(&u.email)
        .bind(u.is_admin).bind(&u.locale).bind(&u.currency).bind(&u.timezone).bind(now)
        .execute(&mut *tx).await?;
        if let Some((shop, role)) = shop {
            sqlx::query("INSERT INTO memberships (shop_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)")
                .bind(shop.0).bind(id.0).bind(role.as_str()).bind(now)
                .execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }.await);
    match res {
        Err(StoreError::Conflict(_)) => return Err(StoreError::Conflict("username".into())),
        other => other?,
    }
    get_user(db, id).await?.ok_or(StoreError::NotFound)
}

/// A user by id.
pub async fn get_user(db: &Db, id: UserId) -> Result<Option<UserRow>, StoreError> {
    let sql = sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"));
    Ok(on_pool!(db, pool => sqlx::query_as(sql).bind(id.0).fetch_optional(pool).await)?)
}

/// A user by case-folded username.
pub async fn find_user(db: &Db, folded: &str) -> Result<Option<UserRow>, StoreError> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users WHERE username_folded = $1"
    ));
    Ok(on_pool!(db, pool => sqlx::query_as(sql).bind(folded).fetch_optional(pool).await)?)
}

/// Replaces a user's password hash (reset, or re-hash after a policy change).
pub async fn set_password_hash(db: &Db, id: UserId, hash: &str) -> Result<(), StoreError> {
    let n = on_pool!(db, pool => sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(hash).bind(id.0).execute(pool).await.map(|r| r.rows_affected()))?;
    if n == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

/// Records a successful login time.
pub async fn touch_login(db: &Db, id: UserId) -> Result<(), StoreError> {
    on_pool!(db, pool => sqlx::query("UPDATE users SET last_login_at = $1 WHERE id = $2")
        .bind(Timestamp::now().0).bind(id.0).execute(pool).await.map(|_| ()))?;
    Ok(())
}

/// Profile preferences to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct PreferencesPatch {
    /// Some(None) clears the email.
    pub email: Option<Option<String>>,
    /// New locale.
    pub locale: Option<String>,
    /// New currency.
    pub currency: Option<String>,
    /// New time zone.
    pub timezone: Option<String>,
}

/// Updates profile preferences.
pub async fn update_preferences(
    db: &Db,
    id: UserId,
    p: &PreferencesPatch,
) -> Result<(), StoreError> {
    on_pool!(db, pool => sqlx::query(
        "UPDATE users SET \
           email = CASE WHEN $1 THEN $2 ELSE email END, \
           locale = COALESCE($3, locale), currency = COALESCE($4, currency), timezone = COALESCE($5, timezone) \
         WHERE id = $6")
        .bind(p.email.is_some()).bind(p.email.clone().flatten())
        .bind(&p.locale).bind(&p.currency).bind(&p.timezone).bind(id.0)
        .execute(pool).await.map(|_| ()))?;
    Ok(())
}

/// Makes a user a platform administrator (bootstrap).
pub async fn set_platform_admin(db: &Db, id: UserId, is_admin: bool) -> Result<(), StoreError> {
    on_pool!(db, pool => sqlx::query("UPDATE users SET is_admin = $1 WHERE id = $2")
        .bind(is_admin).bind(id.0).execute(pool).await.map(|_| ()))?;
    Ok(())
}

const SHOP_COLUMNS: &str = "id, slug, name, registration_open, is_default, created_at";

/// The default shop, created on first start. Concurrent starters agree on one.
pub async fn ensure_default_shop(db: &Db) -> Result<ShopRow, StoreError> {
    let id = ShopId::new();
    on_pool!(db, pool => sqlx::query(
        "INSERT INTO shops (id, slug, name, registration_open, is_default, created_at) \
         VALUES ($1, 'default', 'Default shop', $2, $2, $3) ON CONFLICT DO NOTHING")
        .bind(id.0).bind(true).bind(Timestamp::now().0).execute(pool).await.map(|_| ()))?;
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {SHOP_COLUMNS} FROM shops WHERE is_default = $1"
    ));
    Ok(on_pool!(db, pool => sqlx::query_as(sql).bind(true).fetch_one(pool).await)?)
}

/// Creates a shop with its first owner. A taken slug answers `Conflict("slug")`.
pub async fn create_shop(
    db: &Db,
    slug: &str,
    name: &str,
    owner: UserId,
) -> Result<ShopRow, StoreError> {
    let id = ShopId::new();
    let now = Timestamp::now().0;
    let res: Result<(), StoreError> = on_pool!(db, pool => async {
        let mut tx = pool.begin().await?;
        sqlx::query("INSERT INTO shops (id, slug, name, registration_open, is_default, created_at) VALUES ($1, $2, $3, $4, $4, $5)")
            .bind(id.0).bind(slug).bind(name).bind(false).bind(now).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO memberships (shop_id, user_id, role, created_at) VALUES ($1, $2, 'owner', $3)")
            .bind(id.0).bind(owner.0).bind(now).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }.await);
    match res {
        Err(StoreError::Conflict(_)) => return Err(StoreError::Conflict("slug".into())),
        other => other?,
    }
    get_shop(db, ShopScope::verified(id)).await
}

/// The scoped shop itself.
pub async fn get_shop(db: &Db, scope: ShopScope) -> Result<ShopRow, StoreError> {
    let sql = sqlx::AssertSqlSafe(format!("SELECT {SHOP_COLUMNS} FROM shops WHERE id = $1"));
    Ok(on_pool!(db, pool => sqlx::query_as(sql).bind(scope.shop_id().0).fetch_one(pool).await)?)
}

/// Changes the scoped shop's name and registration setting.
pub async fn update_shop(
    db: &Db,
    scope: ShopScope,
    name: Option<&str>,
    registration_open: Option<bool>,
) -> Result<ShopRow, StoreError> {
    on_pool!(db, pool => sqlx::query(
        "UPDATE shops SET name = COALESCE($1, name), registration_open = COALESCE($2, registration_open) WHERE id = $3")
        .bind(name).bind(registration_open).bind(scope.shop_id().0).execute(pool).await.map(|_| ()))?;
    get_shop(db, scope).await
}

/// Every shop a user belongs to, with their role, oldest first.
pub async fn shops_of_user(db: &Db, user: UserId) -> Result<Vec<(ShopRow, String)>, StoreError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        shop: ShopRow,
        role: String,
    }
    let rows: Vec<Row> = on_pool!(db, pool => sqlx::query_as(
        "SELECT s.id, s.slug, s.name, s.registration_open, s.is_default, s.created_at, m.role \
         FROM memberships m JOIN shops s ON s.id = m.shop_id WHERE m.user_id = $1 ORDER BY s.id")
        .bind(user.0).fetch_all(pool).await)?;
    Ok(rows.into_iter().map(|r| (r.shop, r.role)).collect())
}

/// A user's role in the scoped shop, if they are a member.
pub async fn role_in(db: &Db, scope: ShopScope, user: UserId) -> Result<Option<Role>, StoreError> {
    let role: Option<String> = on_pool!(db, pool => sqlx::query_scalar(
        "SELECT role FROM memberships WHERE shop_id = $1 AND user_id = $2")
        .bind(scope.shop_id().0).bind(user.0).fetch_optional(pool).await)?;
    Ok(role.and_then(|r| r.parse().ok()))
}

/// A user's role in a shop they are joining or switching to (no scope yet: this is the check
/// that produces one).
pub async fn membership(db: &Db, shop: ShopId, user: UserId) -> Result<Option<Role>, StoreError> {
    role_in(db, ShopScope::verified(shop), user).await
}

/// Members of the scoped shop, in joining order.
pub async fn members(db: &Db, scope: ShopScope) -> Result<Vec<MemberRow>, StoreError> {
    Ok(on_pool!(db, pool => sqlx::query_as(
        "SELECT m.user_id, u.username, m.role, m.created_at FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.shop_id = $1 ORDER BY m.created_at, m.user_id")
        .bind(scope.shop_id().0).fetch_all(pool).await)?)
}

/// Adds a member or changes their role; returns the previous role.
pub async fn set_role(
    db: &Db,
    scope: ShopScope,
    user: UserId,
    role: Role,
) -> Result<Option<Role>, StoreError> {
    let before = role_in(db, scope, user).await?;
    on_pool!(db, pool => sqlx::query(
        "INSERT INTO memberships (shop_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (shop_id, user_id) DO UPDATE SET role = excluded.role")
        .bind(scope.shop_id().0).bind(user.0).bind(role.as_str()).bind(Timestamp::now().0)
        .execute(pool).await.map(|_| ()))?;
    Ok(before)
}

/// Removes a member; `NotFound` when they were not one.
pub async fn remove_member(db: &Db, scope: ShopScope, user: UserId) -> Result<Role, StoreError> {
    let before = role_in(db, scope, user)
        .await?
        .ok_or(StoreError::NotFound)?;
    on_pool!(db, pool => sqlx::query("DELETE FROM memberships WHERE shop_id = $1 AND user_id = $2")
        .bind(scope.shop_id().0).bind(user.0).execute(pool).await.map(|_| ()))?;
    Ok(before)
}

/// How many owners the scoped shop has (the last one cannot be removed or demoted).
pub async fn owner_count(db: &Db, scope: ShopScope) -> Result<i64, StoreError> {
    Ok(on_pool!(db, pool => sqlx::query_scalar(
        "SELECT count(*) FROM memberships WHERE shop_id = $1 AND role = 'owner'")
        .bind(scope.shop_id().0).fetch_one(pool).await)?)
}

/// A user, the scoped shop and their role there, in one round trip (for `/me`).
pub async fn user_in_shop(
    db: &Db,
    scope: ShopScope,
    user: UserId,
) -> Result<Option<(UserRow, ShopRow, Option<String>)>, StoreError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        user: UserRow,
        shop_id: Uuid,
        shop_slug: String,
        shop_name: String,
        shop_registration_open: bool,
        shop_is_default: bool,
        shop_created_at: i64,
        role: Option<String>,
    }
    let row: Option<Row> = on_pool!(db, pool => sqlx::query_as(
        "SELECT u.id, u.username, u.password_hash, u.email, u.is_admin, u.locale, u.currency, u.timezone, \
                u.created_at, u.last_login_at, \
                s.id AS shop_id, s.slug AS shop_slug, s.name AS shop_name, s.registration_open AS shop_registration_open, \
                s.is_default AS shop_is_default, s.created_at AS shop_created_at, m.role \
         FROM users u JOIN shops s ON s.id = $2 \
         LEFT JOIN memberships m ON m.shop_id = s.id AND m.user_id = u.id \
         WHERE u.id = $1")
        .bind(user.0).bind(scope.shop_id().0).fetch_optional(pool).await)?;
    Ok(row.map(|r| {
        let shop = ShopRow {
            id: r.shop_id,
            slug: r.shop_slug,
            name: r.shop_name,
            registration_open: r.shop_registration_open,
            is_default: r.shop_is_default,
            created_at: r.shop_created_at,
        };
        (r.user, shop, r.role)
    }))
}
