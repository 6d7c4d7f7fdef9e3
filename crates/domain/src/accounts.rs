//! Accounts: usernames, passwords, profile preferences, roles and the scopes they grant.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Invalid;

/// A username: 4-20 ASCII letters and digits, kept as typed, unique case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    /// Validates a username as typed.
    pub fn parse(field: &'static str, s: &str) -> Result<Self, Invalid> {
        if !(4..=20).contains(&s.chars().count()) {
            return Err(Invalid::new(
                field,
                "length",
                "a username has 4 to 20 characters",
            ));
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Invalid::new(
                field,
                "charset",
                "a username uses only ASCII letters and digits",
            ));
        }
        Ok(Self(s.to_string()))
    }

    /// As typed.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-folded form that uniqueness and look-ups use.
    pub fn folded(&self) -> String {
        fold(&self.0)
    }
}

/// Case-folds a username for comparison (ASCII only, as usernames are ASCII).
pub fn fold(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// A new password that passed the policy: 8-128 characters and not trivially guessable.
#[derive(Clone, PartialEq, Eq)]
pub struct NewPassword(String);

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword([redacted])")
    }
}

impl NewPassword {
    /// Checks length and strength; `user_inputs` (username, email) count against strength.
    pub fn parse(field: &'static str, s: &str, user_inputs: &[&str]) -> Result<Self, Invalid> {
        let n = s.chars().count();
        if n < 8 {
            return Err(Invalid::new(
                field,
                "too_short",
                "a password has at least 8 characters",
            ));
        }
        if n > 128 {
            return Err(Invalid::new(
                field,
                "too_long",
                "a password has at most 128 characters",
            ));
        }
        let estimate = zxcvbn::zxcvbn(s, user_inputs);
        if estimate.score() == zxcvbn::Score::Zero {
            let why = estimate
                .feedback()
                .and_then(|f| f.warning().map(|w| w.to_string()))
                .unwrap_or_else(|| "it is among the most guessed passwords".to_string());
            return Err(Invalid::new(
                field,
                "too_weak",
                format!("this password is too easy to guess: {why}"),
            ));
        }
        Ok(Self(s.to_string()))
    }

    /// The password, for hashing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// How hard a password is to guess, 0 (among the most guessed) to 4 (very hard), counting the
/// username and email against it; the same estimate [`NewPassword::parse`] refuses at 0.
pub fn password_strength(s: &str, user_inputs: &[&str]) -> u8 {
    if s.is_empty() {
        return 0;
    }
    let chars: String = s.chars().take(128).collect();
    u8::from(zxcvbn::zxcvbn(&chars, user_inputs).score())
}

/// Validates an optional email address (shape only; delivery proves the rest).
pub fn parse_email(field: &'static str, s: &str) -> Result<String, Invalid> {
    let s = s.trim();
    let ok = s.len() <= 254
        && s.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && s.matches('@').count() == 1;
    if ok {
        Ok(s.to_string())
    } else {
        Err(Invalid::new(field, "invalid", "not an email address"))
    }
}

/// Validates a locale tag such as `en`, `de-DE` or `pt-BR`.
pub fn parse_locale(field: &'static str, s: &str) -> Result<String, Invalid> {
    let mut parts = s.split('-');
    let lang = parts.next().unwrap_or("");
    let region = parts.next();
    let ok = (2..=3).contains(&lang.len())
        && lang.bytes().all(|b| b.is_ascii_lowercase())
        && region.is_none_or(|r| r.len() == 2 && r.bytes().all(|b| b.is_ascii_uppercase()))
        && parts.next().is_none();
    if ok {
        Ok(s.to_string())
    } else {
        Err(Invalid::new(
            field,
            "invalid",
            "a locale looks like en or de-DE",
        ))
    }
}

/// Validates an ISO 4217 currency code shape (three capital letters).
pub fn parse_currency(field: &'static str, s: &str) -> Result<String, Invalid> {
    if s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(s.to_string())
    } else {
        Err(Invalid::new(
            field,
            "invalid",
            "a currency is an ISO 4217 code such as USD or EUR",
        ))
    }
}

/// Validates an IANA time zone name shape (`UTC`, `Europe/Berlin`, `America/Argentina/Salta`).
pub fn parse_timezone(field: &'static str, s: &str) -> Result<String, Invalid> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.split('/').all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-+".contains(&b))
        });
    if ok {
        Ok(s.to_string())
    } else {
        Err(Invalid::new(
            field,
            "invalid",
            "a time zone is an IANA name such as Europe/Berlin",
        ))
    }
}

/// A member's role in a shop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Buys: places and follows own orders.
    Customer,
    /// Works in the shop: catalog and events.
    Staff,
    /// Runs the shop: decides orders, manages members below admin, keys, jobs, webhooks.
    Admin,
    /// Owns the shop: everything an admin can, plus granting admin and owner.
    Owner,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 4] = [Role::Customer, Role::Staff, Role::Admin, Role::Owner];

    /// Name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Staff => "staff",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    /// The scopes this role grants.
    pub fn scopes(self) -> Vec<Scope> {
        use Scope::*;
        let mut s = vec![OrdersRead, OrdersWrite, CatalogRead];
        if self >= Role::Staff {
            s.extend([CatalogWrite, EventsWrite]);
        }
        if self >= Role::Admin {
            s.extend([OrdersAdmin, JobsAdmin, WebhooksAdmin, ShopAdmin]);
        }
        if self == Role::Owner {
            s.push(ShopOwner);
        }
        s
    }
}

impl FromStr for Role {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or(())
    }
}

/// A permission an endpoint may require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Read own orders (all orders with `orders:admin`).
    OrdersRead,
    /// Place and cancel own orders.
    OrdersWrite,
    /// Decide (approve/reject) and export the shop's orders.
    OrdersAdmin,
    /// Read the catalog.
    CatalogRead,
    /// Change the catalog.
    CatalogWrite,
    /// Operate background jobs.
    JobsAdmin,
    /// Manage webhook endpoints and receipts.
    WebhooksAdmin,
    /// Send storefront events.
    EventsWrite,
    /// Manage the shop: settings, members below admin, API keys, audit log.
    ShopAdmin,
    /// Grant and revoke admin and owner roles.
    ShopOwner,
    /// Platform administration: create shops.
    PlatformAdmin,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 11] = [
        Scope::OrdersRead,
        Scope::OrdersWrite,
        Scope::OrdersAdmin,
        Scope::CatalogRead,
        Scope::CatalogWrite,
        Scope::JobsAdmin,
        Scope::WebhooksAdmin,
        Scope::EventsWrite,
        Scope::ShopAdmin,
        Scope::ShopOwner,
        Scope::PlatformAdmin,
    ];

    /// Name as in tokens and API keys (`orders:read`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::OrdersRead => "orders:read",
            Scope::OrdersWrite => "orders:write",
            Scope::OrdersAdmin => "orders:admin",
            Scope::CatalogRead => "catalog:read",
            Scope::CatalogWrite => "catalog:write",
            Scope::JobsAdmin => "jobs:admin",
            Scope::WebhooksAdmin => "webhooks:admin",
            Scope::EventsWrite => "events:write",
            Scope::ShopAdmin => "shop:admin",
            Scope::ShopOwner => "shop:owner",
            Scope::PlatformAdmin => "platform:admin",
        }
    }
}

impl FromStr for Scope {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s).ok_or(())
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The scopes a member of a shop gets: the role's, plus `platform:admin` for platform admins.
pub fn scopes_for(role: Role, is_platform_admin: bool) -> Vec<Scope> {
    let mut s = role.scopes();
    if is_platform_admin {
        s.push(Scope::PlatformAdmin);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn usernames_are_4_to_20_ascii_letters_and_digits_compared_folded() {
        assert!(Username::parse("u", "Ab12").is_ok());
        assert_eq!(Username::parse("u", "abc").unwrap_err().code, "length");
        assert_eq!(
            Username::parse("u", &"a".repeat(21)).unwrap_err().code,
            "length"
        );
        assert_eq!(Username::parse("u", "ab_cd").unwrap_err().code, "charset");
        assert_eq!(Username::parse("u", "ämil1").unwrap_err().code, "charset");
        assert_eq!(Username::parse("u", "AlIcE").unwrap().folded(), "alice");
        assert_eq!(Username::parse("u", "AlIcE").unwrap().as_str(), "AlIcE");
    }

    #[test]
    fn passwords_refuse_short_long_and_guessable_ones_saying_why() {
        assert_eq!(
            NewPassword::parse("p", "short", &[]).unwrap_err().code,
            "too_short"
        );
        assert_eq!(
            NewPassword::parse("p", &"x".repeat(129), &[])
                .unwrap_err()
                .code,
            "too_long"
        );
        let weak = NewPassword::parse("p", "password", &[]).unwrap_err();
        assert_eq!(weak.code, "too_weak");
        assert!(
            weak.message.contains("too easy to guess"),
            "{}",
            weak.message
        );
        assert_eq!(
            NewPassword::parse("p", "alice1234", &["alice1234"])
                .unwrap_err()
                .code,
            "too_weak"
        );
        assert!(NewPassword::parse("p", "correct horse battery staple", &[]).is_ok());
        assert!(
            !format!(
                "{:?}",
                NewPassword::parse("p", "Tr0ub4dor&3-long", &[]).unwrap()
            )
            .contains("Tr0ub")
        );
    }

    #[test]
    fn preferences_accept_common_values_and_refuse_junk() {
        assert!(parse_locale("l", "en").is_ok() && parse_locale("l", "pt-BR").is_ok());
        assert!(parse_locale("l", "english").is_err() && parse_locale("l", "en-us").is_err());
        assert!(parse_currency("c", "EUR").is_ok() && parse_currency("c", "eur").is_err());
        assert!(
            parse_timezone("t", "America/Argentina/Salta").is_ok()
                && parse_timezone("t", "UTC").is_ok()
        );
        assert!(parse_timezone("t", "../etc/passwd").is_err());
        assert!(parse_email("e", "a@b.co").is_ok());
        assert!(
            parse_email("e", "a@@b.co").is_err()
                && parse_email("e", "nope").is_err()
                && parse_email("e", "a b@c.de").is_err()
        );
    }

    #[test]
    fn higher_roles_hold_every_scope_of_lower_ones() {
        for w in Role::ALL.windows(2) {
            let (lo, hi) = (w[0].scopes(), w[1].scopes());
            assert!(lo.iter().all(|s| hi.contains(s)), "{:?} < {:?}", w[0], w[1]);
        }
        assert!(!Role::Admin.scopes().contains(&Scope::ShopOwner));
        assert!(scopes_for(Role::Customer, true).contains(&Scope::PlatformAdmin));
        for s in Scope::ALL {
            assert_eq!(s.as_str().parse::<Scope>(), Ok(s));
        }
    }

    proptest! {
        #[test]
        fn username_validation_never_panics_and_accepts_exactly_the_rule(s in "\\PC{0,30}") {
            let ok = Username::parse("u", &s).is_ok();
            let rule = (4..=20).contains(&s.chars().count()) && s.bytes().all(|b| b.is_ascii_alphanumeric());
            prop_assert_eq!(ok, rule);
        }

        #[test]
        fn accepted_passwords_have_8_to_128_characters_and_longer_ones_are_refused(s in "\\PC{0,140}") {
            match NewPassword::parse("password", &s, &["alice"]) {
                Ok(p) => {
                    prop_assert_eq!(p.expose(), s.as_str());
                    prop_assert!((8..=128).contains(&s.chars().count()));
                    prop_assert!(password_strength(&s, &["alice"]) >= 1);
                }
                Err(e) => {
                    prop_assert_eq!(e.field, "password");
                    let n = s.chars().count();
                    let want = if n < 8 { "too_short" } else if n > 128 { "too_long" } else { "too_weak" };
                    prop_assert_eq!(e.code, want);
                }
            }
        }

        #[test]
        fn accepted_emails_are_trimmed_one_at_and_a_dotted_domain(s in "\\PC{0,40}|[ a-z.@]{1,12}|[a-z]{1,250}@[a-z]{1,8}\\.[a-z]{2,3}") {
            match parse_email("email", &s) {
                Ok(e) => {
                    prop_assert_eq!(e.as_str(), s.trim());
                    prop_assert!(e.len() <= 254);
                    prop_assert_eq!(e.matches('@').count(), 1);
                    let (local, domain) = e.split_once('@').unwrap();
                    prop_assert!(!local.is_empty() && domain.contains('.'));
                    prop_assert!(!domain.starts_with('.') && !domain.ends_with('.'));
                    prop_assert!(!e.chars().any(|c| c.is_whitespace() || c.is_control()));
                }
                Err(e) => prop_assert_eq!((e.field, e.code), ("email", "invalid")),
            }
        }

        #[test]
        fn over_long_emails_are_refused(local in "[a-z]{250,300}") {
            let e = parse_email("email", &format!("{local}@example.com")).unwrap_err();
            prop_assert_eq!(e.field, "email");
        }

        #[test]
        fn locales_currencies_and_time_zones_accept_only_their_shapes(s in "\\PC{0,12}|[a-zA-Z-]{2,6}|[A-Za-z_/+-]{1,70}") {
            match parse_locale("locale", &s) {
                Ok(l) => {
                    let (lang, region) = l.split_once('-').unwrap_or((&l, ""));
                    prop_assert!((2..=3).contains(&lang.len()) && lang.bytes().all(|b| b.is_ascii_lowercase()));
                    prop_assert!(region.is_empty() || (region.len() == 2 && region.bytes().all(|b| b.is_ascii_uppercase())));
                }
                Err(e) => prop_assert_eq!(e.field, "locale"),
            }
            match parse_currency("currency", &s) {
                Ok(c) => prop_assert!(c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase())),
                Err(e) => prop_assert_eq!(e.field, "currency"),
            }
            match parse_timezone("timezone", &s) {
                Ok(t) => {
                    prop_assert!(!t.is_empty() && t.len() <= 64);
                    prop_assert!(t.split('/').all(|p| !p.is_empty()
                        && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-+".contains(&b))));
                }
                Err(e) => prop_assert_eq!(e.field, "timezone"),
            }
        }

        #[test]
        fn time_zones_over_64_characters_are_refused(s in "[A-Za-z]{65,100}") {
            prop_assert_eq!(parse_timezone("timezone", &s).unwrap_err().field, "timezone");
        }
    }
}
