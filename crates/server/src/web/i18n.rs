//! Every text of the web pages goes through [`Tr::t`], so a language is one more table.
//! English is the only language so far; a missing key shows the key itself and a test keeps
//! every key used in the templates and handlers in the table.

/// The translator for one page.
#[derive(Debug, Clone, Copy)]
pub struct Tr {
    lang: &'static str,
}

impl Default for Tr {
    fn default() -> Self {
        Self { lang: "en" }
    }
}

impl Tr {
    /// The page's `lang` attribute.
    pub fn lang(&self) -> &'static str {
        self.lang
    }

    /// The text for `key`.
    pub fn t(&self, key: &str) -> &'static str {
        english(key).unwrap_or_else(|| {
            tracing::warn!(key, "web text missing");
            "?"
        })
    }

    /// The text for `key` with each `{name}` replaced by its value.
    pub fn f(&self, key: &str, args: &[(&str, &dyn std::fmt::Display)]) -> String {
        let mut s = self.t(key).to_string();
        for (name, value) in args {
            s = s.replace(&format!("{{{name}}}"), &value.to_string());
        }
        s
    }

    /// The message for a field's validation error: the text for `err.<field>.<code>` (field
    /// without its `body.` prefix), else `fallback` (the API's own sentence) as a sentence.
    pub fn field_error(&self, field: &str, code: &str, fallback: &str) -> String {
        let field = field.strip_prefix("body.").unwrap_or(field);
        match english(&format!("err.{field}.{code}")) {
            Some(t) => t.to_string(),
            None => super::sentence(fallback),
        }
    }

    /// The label of an order status (`PENDING` ...).
    pub fn status(&self, status: &str) -> &'static str {
        match status {
            "PENDING" => self.t("status.pending"),
            "APPROVED" => self.t("status.approved"),
            "REJECTED" => self.t("status.rejected"),
            "CANCELLED" => self.t("status.cancelled"),
            _ => self.t("status.unknown"),
        }
    }
}

fn english(key: &str) -> Option<&'static str> {
    Some(match key {
        "app.name" => "shopkeep",
        "nav.label" => "Main",
        "nav.skip" => "Skip to content",
        "nav.orders" => "My orders",
        "nav.new_order" => "New order",
        "nav.dashboard" => "Dashboard",
        "nav.sign_in" => "Sign in",
        "nav.register" => "Create an account",
        "nav.sign_out" => "Sign out",
        "nav.signed_in_as" => "Signed in as",

        "login.title" => "Sign in",
        "login.username" => "Username",
        "login.password" => "Password",
        "login.submit" => "Sign in",
        "login.no_account" => "New here?",
        "login.register" => "Create an account",
        "login.invalid" => "Invalid username or password.",
        "login.limited" => "Too many failed sign-in attempts. Try again in {seconds} seconds.",
        "login.no_shop" => "This account is not a member of any shop.",
        "login.unavailable" => "Signing in is unavailable right now. Try again in a moment.",
        "login.signed_out" => "You have signed out.",
        "login.expired" => "Your session ended. Sign in again.",

        "register.title" => "Create an account",
        "register.username" => "Username",
        "register.username_hint" => "4-20 letters and digits.",
        "register.password" => "Password",
        "register.password_hint" => "At least 8 characters; a few unrelated words work well.",
        "register.email" => "Email (optional)",
        "register.submit" => "Create account",
        "register.strength" => "Password strength",
        "register.have_account" => "Already have an account?",
        "register.sign_in" => "Sign in",
        "register.done" => "Account created. Sign in with your new password.",
        "register.closed" => "This shop does not accept new accounts.",
        "register.fix" => "Please correct the fields marked below.",
        "strength.0" => "Very weak",
        "strength.1" => "Weak",
        "strength.2" => "Fair",
        "strength.3" => "Good",
        "strength.4" => "Strong",

        "orders.title" => "My orders",
        "orders.tabs" => "Filter by status",
        "orders.all" => "All",
        "orders.empty" => "No orders here yet.",
        "orders.place_first" => "Place an order",
        "orders.item" => "Item",
        "orders.quantity" => "Quantity",
        "orders.status" => "Status",
        "orders.created" => "Placed",
        "orders.customer" => "Customer",
        "orders.actions" => "Actions",
        "orders.cancel" => "Cancel",
        "orders.cancel_confirm" => "Cancel this order?",
        "orders.cancelled" => "Order cancelled.",
        "orders.older" => "Older orders",
        "orders.first_page" => "Newest orders",
        "orders.more_items" => "more",
        "orders.live" => "Status changes appear here as they happen.",

        "new.title" => "New order",
        "new.item" => "Item",
        "new.item_hint" => "What would you like? Up to 255 characters.",
        "new.quantity" => "Quantity",
        "new.notes" => "Notes",
        "new.notes_hint" => "Optional, up to 1000 characters.",
        "new.quantity_whole" => "Give a whole number from 1 to 100.",
        "new.submit" => "Place order",
        "new.resent" => {
            "This form was already sent with other values. Check them and place the order again."
        }
        "new.placed" => "Order placed.",
        "new.view" => "View order",

        "detail.title" => "Order",
        "detail.items" => "Items",
        "detail.notes" => "Notes",
        "detail.no_notes" => "No notes.",
        "detail.timeline" => "History",
        "detail.created" => "Placed",
        "detail.by" => "by",
        "detail.reason" => "Reason",
        "detail.source" => "Source",
        "detail.total" => "Total",
        "detail.back" => "Back to my orders",
        "detail.back_admin" => "Back to the dashboard",

        "dash.title" => "Dashboard",
        "dash.total" => "Orders",
        "dash.pending" => "Pending",
        "dash.approval_rate" => "Approval rate",
        "dash.median_decision" => "Median time to decision",
        "dash.none" => "—",
        "dash.chart" => "Orders per day, last 30 days",
        "dash.chart_peak" => "peak {peak} per day",
        "dash.search" => "Search by username",
        "dash.status" => "Status",
        "dash.export" => "Export CSV",
        "dash.orders" => "Orders",
        "dash.approve" => "Approve",
        "dash.reject" => "Reject",
        "dash.reject_prompt" => "Reason for rejecting (optional)",
        "dash.reject_reason" => "Reason",
        "dash.no_match" => "No orders match.",
        "dash.approved" => "Order approved.",
        "dash.rejected" => "Order rejected.",

        "status.pending" => "Pending",
        "status.approved" => "Approved",
        "status.rejected" => "Rejected",
        "status.cancelled" => "Cancelled",
        "status.unknown" => "Unknown",

        "duration.seconds" => "{n} s",
        "duration.minutes" => "{n} min",
        "duration.hours" => "{n} h",
        "duration.days" => "{n} d",

        "err.username.length" => "A username has 4 to 20 characters.",
        "err.username.charset" => "Use only letters A-Z and digits.",
        "err.username.taken" => "This username is taken. Try another one.",
        "err.password.too_short" => "A password has at least 8 characters.",
        "err.password.too_long" => "A password has at most 128 characters.",
        "err.password.too_weak" => "This password is too easy to guess. Add a few unrelated words.",
        "err.email.invalid" => "This is not an email address.",
        "err.item_name.required" => "Give the item a name.",
        "err.item_name.too_long" => "An item name has at most 255 characters.",
        "err.item_name.control_characters" => "Remove the control characters.",
        "err.quantity.required" => "Give a quantity from 1 to 100.",
        "err.quantity.out_of_range" => "Give a quantity from 1 to 100.",
        "err.notes.too_long" => "Notes have at most 1000 characters.",
        "err.notes.control_characters" => "Remove the control characters.",
        "error.title" => "Something went wrong",
        "error.403.title" => "Request refused",
        "error.403.text" => "You are not allowed to do this.",
        "error.csrf.text" => {
            "The security check of this form failed, so nothing was changed. Reload the page and try again."
        }
        "error.404.title" => "Page not found",
        "error.404.text" => "There is nothing at this address.",
        "error.409.title" => "Already changed",
        "error.500.title" => "Something went wrong",
        "error.500.text" => {
            "The server could not finish this request. Nothing was lost; try again in a moment."
        }
        "error.503.title" => "Temporarily unavailable",
        "error.503.text" => "A service shopkeep needs is not answering. Try again in a moment.",
        "error.home" => "Go to the start page",
        "error.request_id" => "Request id",
        "error.network" => "The server could not be reached. Check the connection and try again.",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `.t("...")` and `.f("...")` in the templates and web handlers names a text.
    #[test]
    fn every_key_used_has_english_text() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/");
        let mut files = Vec::new();
        for sub in ["templates/web", "src/web"] {
            for e in std::fs::read_dir(format!("{dir}{sub}")).unwrap() {
                files.push(e.unwrap().path());
            }
        }
        let mut checked = 0;
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            for pat in [".t(\"", ".f(\""] {
                for (i, _) in text.match_indices(pat) {
                    let rest = &text[i + pat.len()..];
                    let key = &rest[..rest.find('"').unwrap()];
                    if key.starts_with('.') || key.contains(' ') || !key.contains('.') {
                        continue;
                    }
                    assert!(
                        english(key).is_some(),
                        "{}: no text for {key}",
                        path.display()
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 50, "only {checked} keys found");
    }

    #[test]
    fn placeholders_are_filled() {
        let tr = Tr::default();
        assert_eq!(
            tr.f("login.limited", &[("seconds", &42)]),
            "Too many failed sign-in attempts. Try again in 42 seconds."
        );
        assert_eq!(tr.status("APPROVED"), "Approved");
        assert_eq!(tr.lang(), "en");
    }
}
