//! The tenant scope every store function for tenant data takes.

use shopkeep_domain::ShopId;

/// A shop the current caller was authenticated into. Tenant store functions take it and filter
/// every statement by it, so another shop's row reads as missing.
///
/// Only the HTTP authentication layer and trusted internal callers (bootstrap, jobs that carry a
/// shop id they were enqueued with) construct it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShopScope(ShopId);

impl ShopScope {
    /// Scope for a shop whose access was verified (token claim, session, API key, job record).
    pub fn verified(shop: ShopId) -> Self {
        Self(shop)
    }

    /// The shop id.
    pub fn shop_id(&self) -> ShopId {
        self.0
    }
}
