//! The integrations inbound webhooks look up, kept for a short time so that a burst of webhooks
//! for one shop reads its integration once instead of once per request.
//!
//! An entry (found or not found) lives for `webhooks.integration_cache_ttl`. Every change this
//! process makes to an integration empties the cache, so here a change is seen at once; another
//! instance sees it within the TTL. A TTL of zero turns the cache off. The cache holds at most
//! [`MAX_ENTRIES`] entries and is emptied when full, so payloads naming ever new accounts (the
//! Printify look-up happens before the signature is checked) cannot grow it without bound.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shopkeep_domain::ShopId;
use shopkeep_store::webhooks::{self as store, Integration};
use shopkeep_store::{Db, ShopScope, StoreError};
use uuid::Uuid;

/// The most entries the cache holds before it starts over.
pub const MAX_ENTRIES: usize = 10_000;

/// How an integration is looked up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// By the provider's name for the account (`acme.myshopify.com`).
    Account(&'static str, String),
    /// By the shop (Standard Webhooks, whose URL names the shop).
    Shop(&'static str, Uuid),
}

/// Integrations by account or shop, each kept for the TTL.
pub struct IntegrationCache {
    ttl: Duration,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, (Instant, Option<Integration>)>,
    /// Counts the clears: a look-up that started before a clear does not store its answer.
    generation: u64,
}

impl IntegrationCache {
    /// A cache whose entries live for `ttl` (zero: no caching).
    pub fn new(ttl: Duration) -> Self {
        IntegrationCache {
            ttl,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The shop's integration behind `provider`'s account name, as
    /// [`store::integration_by_account`] gives it.
    pub async fn by_account(
        &self,
        db: &Db,
        provider: &'static str,
        account: &str,
    ) -> Result<Option<Integration>, StoreError> {
        let key = Key::Account(provider, account.to_string());
        self.get_or_load(key, || store::integration_by_account(db, provider, account))
            .await
    }

    /// The shop's integration with `provider`, as [`store::integration`] gives it.
    pub async fn by_shop(
        &self,
        db: &Db,
        provider: &'static str,
        shop: Uuid,
    ) -> Result<Option<Integration>, StoreError> {
        let key = Key::Shop(provider, shop);
        self.get_or_load(key, || {
            store::integration(db, ShopScope::verified(ShopId(shop)), provider)
        })
        .await
    }

    /// Forgets every entry: called after each change to an integration.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.entries.clear();
        inner.generation += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-changed (each operation is one
        // insert or clear), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn get_or_load<F, Fut>(
        &self,
        key: Key,
        load: F,
    ) -> Result<Option<Integration>, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Option<Integration>, StoreError>>,
    {
        if self.ttl.is_zero() {
            return load().await;
        }
        let generation = {
            let inner = self.lock();
            if let Some((at, hit)) = inner.entries.get(&key)
                && at.elapsed() < self.ttl
            {
                return Ok(hit.clone());
            }
            inner.generation
        };
        // The entry's age counts from before the look-up, and an answer read while this process
        // changed an integration is used once but not kept.
        let started = Instant::now();
        let found = load().await?;
        let mut inner = self.lock();
        if inner.generation == generation {
            if inner.entries.len() >= MAX_ENTRIES {
                inner.entries.clear();
            }
            inner.entries.insert(key, (started, found.clone()));
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn integration(account: &str) -> Integration {
        Integration {
            shop_id: Uuid::now_v7(),
            provider: "shopify".into(),
            account: account.into(),
            secret: None,
            previous_secret: None,
            uninstalled_at: None,
            created_at: 1,
            updated_at: 1,
        }
    }

    /// Looks `account` up through the cache with a loader that counts its calls.
    async fn look(
        cache: &IntegrationCache,
        account: &str,
        loads: &AtomicUsize,
        answer: Option<Integration>,
    ) -> Option<Integration> {
        let key = Key::Account("shopify", account.to_string());
        cache
            .get_or_load(key, || async {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok(answer)
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn an_answer_is_reused_until_the_ttl_passes_or_the_cache_is_cleared() {
        let cache = IntegrationCache::new(Duration::from_millis(200));
        let loads = AtomicUsize::new(0);
        let first = integration("a.myshopify.com");
        let got = look(&cache, "a.myshopify.com", &loads, Some(first.clone())).await;
        assert_eq!(got.map(|i| i.shop_id), Some(first.shop_id));
        // The second look-up is answered from the cache, even though the loader would now say
        // something else.
        let got = look(&cache, "a.myshopify.com", &loads, None).await;
        assert_eq!(got.map(|i| i.shop_id), Some(first.shop_id));
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        // "Not found" is kept too, per account.
        assert!(
            look(&cache, "b.myshopify.com", &loads, None)
                .await
                .is_none()
        );
        assert!(
            look(&cache, "b.myshopify.com", &loads, Some(first.clone()))
                .await
                .is_none()
        );
        assert_eq!(loads.load(Ordering::SeqCst), 2);

        cache.clear();
        assert!(
            look(&cache, "a.myshopify.com", &loads, None)
                .await
                .is_none()
        );
        assert_eq!(loads.load(Ordering::SeqCst), 3);

        tokio::time::sleep(Duration::from_millis(250)).await;
        let again = look(&cache, "a.myshopify.com", &loads, Some(first.clone())).await;
        assert_eq!(again.map(|i| i.shop_id), Some(first.shop_id));
        assert_eq!(loads.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_zero_ttl_reads_every_time() {
        let cache = IntegrationCache::new(Duration::ZERO);
        let loads = AtomicUsize::new(0);
        for _ in 0..3 {
            look(&cache, "a.myshopify.com", &loads, None).await;
        }
        assert_eq!(loads.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_answer_read_while_the_cache_is_cleared_is_not_kept() {
        let cache = IntegrationCache::new(Duration::from_secs(60));
        let loads = AtomicUsize::new(0);
        let key = Key::Account("shopify", "a.myshopify.com".into());
        // The loader sees the old state, and the change (with its clear) lands before it returns.
        let old = cache
            .get_or_load(key, || async {
                loads.fetch_add(1, Ordering::SeqCst);
                cache.clear();
                Ok(Some(integration("a.myshopify.com")))
            })
            .await
            .unwrap();
        assert!(old.is_some(), "the caller still gets what was read");
        assert!(
            look(&cache, "a.myshopify.com", &loads, None)
                .await
                .is_none()
        );
        assert_eq!(
            loads.load(Ordering::SeqCst),
            2,
            "the stale answer was not kept"
        );
    }

    #[tokio::test]
    async fn a_full_cache_starts_over() {
        let cache = IntegrationCache::new(Duration::from_secs(60));
        let loads = AtomicUsize::new(0);
        for i in 0..MAX_ENTRIES {
            look(&cache, &format!("{i}"), &loads, None).await;
        }
        assert_eq!(cache.lock().entries.len(), MAX_ENTRIES);
        look(&cache, "one more", &loads, None).await;
        assert_eq!(cache.lock().entries.len(), 1);
    }
}
