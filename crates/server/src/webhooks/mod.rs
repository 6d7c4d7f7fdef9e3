//! Webhooks: verified inbound receipts (`inbound`), their processing by topic (`topics`), and
//! signed outbound deliveries of the orders outbox (`outbound`).
//!
//! Both directions run through the job queue: an inbound receipt is stored with its processing
//! job in one transaction and acknowledged after the commit; an outbound delivery attempt is a
//! job, and each failed attempt enqueues the next one at the time the retry schedule gives.

pub mod inbound;
pub mod integrations;
pub mod outbound;
pub mod receipts;
pub mod topics;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ipnet::IpNet;
use shopkeep_domain::Secret;
use shopkeep_jobs::{Backoff, JobContext, KindPolicy, Registry};
use shopkeep_store::jobs::NewJob;
use shopkeep_store::{Db, StoreError};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::crypto::Sealer;

/// Job kind that processes one inbound receipt.
pub const PROCESS: &str = "webhooks.process";
/// Job kind of one outbound delivery attempt.
pub const DELIVER: &str = "webhooks.deliver";
/// The queue webhook jobs wait in.
pub const QUEUE: &str = "webhooks";

/// Webhook settings.
#[derive(Clone)]
pub struct WebhookOptions {
    /// Shopify app client secrets, current first (`shopify.client_secret`,
    /// `shopify.previous_client_secret`).
    pub shopify_secrets: Vec<Secret<String>>,
    /// Stripe endpoint secrets, current first.
    pub stripe_secrets: Vec<Secret<String>>,
    /// Printify webhook secrets, current first (per-shop secrets come from the integration).
    pub printify_secrets: Vec<Secret<String>>,
    /// An outbound attempt not answered within this time fails.
    pub delivery_timeout: Duration,
    /// An endpoint whose every delivery failed for this long is disabled.
    pub disable_after: Duration,
    /// Networks outbound deliveries may reach even though they are private or loopback.
    pub allow_networks: Vec<IpNet>,
    /// How often the dispatcher looks at the outbox.
    pub dispatch_interval: Duration,
    /// After a secret rotation, the old secret keeps signing this long.
    pub secret_overlap: Duration,
    /// How long inbound webhooks reuse an integration they looked up (zero: every request reads
    /// it).
    pub integration_cache_ttl: Duration,
}

impl Default for WebhookOptions {
    /// No provider secrets; 15 s timeout, disable after 5 days, dispatch every 200 ms, 24 h
    /// secret overlap, integrations kept 1 s, no private networks allowed.
    fn default() -> Self {
        WebhookOptions {
            shopify_secrets: Vec::new(),
            stripe_secrets: Vec::new(),
            printify_secrets: Vec::new(),
            delivery_timeout: Duration::from_secs(15),
            disable_after: Duration::from_secs(5 * 86_400),
            allow_networks: Vec::new(),
            dispatch_interval: Duration::from_millis(200),
            secret_overlap: Duration::from_secs(86_400),
            integration_cache_ttl: Duration::from_secs(1),
        }
    }
}

/// What webhook handling needs besides the database: secrets, the sealer, the HTTP client.
pub struct WebhookService {
    /// Settings.
    pub opts: WebhookOptions,
    /// Seals endpoint and integration secrets at rest.
    pub sealer: Sealer,
    /// The SSRF-guarded client of outbound deliveries.
    pub client: outbound::Client,
    /// The integrations inbound webhooks resolve their shop with; cleared by every change.
    pub integrations: integrations::IntegrationCache,
    /// Reads attempts' deliveries, endpoints and payloads in batches; started with the database
    /// of the first attempt (a process has one).
    contexts: std::sync::OnceLock<outbound::ContextReader>,
}

impl WebhookService {
    /// Builds the service and its HTTP client.
    pub fn new(opts: WebhookOptions, sealer: Sealer) -> anyhow::Result<Self> {
        let client = outbound::Client::new(opts.delivery_timeout, opts.allow_networks.clone())?;
        Ok(WebhookService {
            integrations: integrations::IntegrationCache::new(opts.integration_cache_ttl),
            opts,
            sealer,
            client,
            contexts: std::sync::OnceLock::new(),
        })
    }

    /// The attempt context reader, started on first use.
    pub fn context_reader(&self, db: &Db) -> &outbound::ContextReader {
        self.contexts
            .get_or_init(|| outbound::start_context_reader(db.clone()))
    }

    /// Seals a secret for storage; `aad` binds it to its row.
    pub fn seal(&self, plain: &str, aad: &[u8]) -> String {
        B64.encode(self.sealer.seal(plain.as_bytes(), aad))
    }

    /// Opens a sealed secret.
    pub fn open(&self, sealed: &str, aad: &[u8]) -> anyhow::Result<String> {
        let bytes = B64
            .decode(sealed)
            .map_err(|_| anyhow::anyhow!("a sealed secret is not base64"))?;
        Ok(String::from_utf8(self.sealer.open(&bytes, aad)?)?)
    }
}

/// Associated data of a sealed endpoint secret: the row it belongs to.
pub fn endpoint_aad(shop: Uuid, endpoint: Uuid) -> Vec<u8> {
    format!("webhook_endpoint:{shop}:{endpoint}").into_bytes()
}

/// Associated data of a sealed integration secret.
pub fn integration_aad(shop: Uuid, provider: &str) -> Vec<u8> {
    format!("integration:{shop}:{provider}").into_bytes()
}

/// Arguments of [`PROCESS`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProcessArgs {
    /// The receipt.
    pub receipt_id: Uuid,
}

/// Arguments of [`DELIVER`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DeliverArgs {
    /// The delivery.
    pub delivery_id: Uuid,
}

/// The job that processes a receipt.
pub fn process_job(receipt: Uuid, shop: Option<Uuid>, now: i64) -> NewJob {
    NewJob {
        id: Uuid::now_v7(),
        kind: PROCESS.into(),
        queue: QUEUE.into(),
        args: serde_json::json!({ "receipt_id": receipt }).to_string(),
        priority: 4,
        run_at: now,
        max_attempts: 10,
        timeout_ms: 60_000,
        unique: None,
        rate_key: None,
        tags: "[\"webhooks\"]".into(),
        shop_id: shop,
    }
}

/// The job of one delivery attempt, due at `run_at`. The attempt's own timeout bounds the job;
/// the job itself is retried only when its worker is lost (a failed HTTP attempt is recorded
/// and followed by a new job on the retry schedule).
pub fn deliver_job(shop: Uuid, delivery: Uuid, run_at: i64) -> NewJob {
    NewJob {
        id: Uuid::now_v7(),
        kind: DELIVER.into(),
        queue: QUEUE.into(),
        args: serde_json::json!({ "delivery_id": delivery }).to_string(),
        priority: 5,
        run_at,
        max_attempts: 5,
        timeout_ms: 60_000,
        unique: None,
        rate_key: None,
        tags: "[\"webhooks\"]".into(),
        shop_id: Some(shop),
    }
}

/// Registers the webhook job kinds.
pub fn register(registry: &mut Registry, svc: Arc<WebhookService>) {
    let policy = KindPolicy {
        queue: QUEUE.into(),
        priority: 4,
        max_attempts: 10,
        timeout: Duration::from_secs(60),
        backoff: Backoff {
            base: Duration::from_secs(5),
            max: Duration::from_secs(3600),
        },
        rate: None,
    };
    let processing = svc.clone();
    registry.register(
        PROCESS,
        policy.clone(),
        move |ctx: JobContext, args: ProcessArgs| {
            let s = processing.clone();
            async move { topics::process(&ctx, &s.integrations, args.receipt_id).await }
        },
    );
    registry.register(
        DELIVER,
        KindPolicy {
            max_attempts: 5,
            ..policy
        },
        move |ctx: JobContext, args: DeliverArgs| {
            let s = svc.clone();
            async move { outbound::deliver(&s, &ctx, args.delivery_id).await }
        },
    );
}

/// The dispatcher: moves outbox events into deliveries every `dispatch_interval` until `stop`
/// fires. Any number of instances may run it; one dispatches at a time.
pub async fn run_dispatcher(
    db: Db,
    jobs: shopkeep_jobs::Jobs,
    every: Duration,
    stop: CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        let pause = match dispatch_once(&db).await {
            Ok(Some(n)) if n > 0 => {
                failures = 0;
                jobs.wake_queues([QUEUE]);
                Duration::ZERO
            }
            Ok(_) => {
                failures = 0;
                every
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %anyhow::Error::new(e), "webhook dispatch failed; retrying");
                every * failures.min(25)
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// One dispatch round of up to 500 outbox events.
pub async fn dispatch_once(db: &Db) -> Result<Option<usize>, StoreError> {
    let now = shopkeep_domain::Timestamp::now().0;
    shopkeep_store::webhooks::dispatch_outbox(db, 500, now, &deliver_job).await
}

/// Describes the webhook metrics.
pub fn describe_metrics() {
    metrics::describe_counter!(
        "shopkeep_webhook_receipts_total",
        "Inbound webhooks by provider, topic and result (stored, duplicate, unhandled, orphaned, rejected)."
    );
    metrics::describe_counter!(
        "shopkeep_webhook_deliveries_total",
        "Outbound delivery attempts by outcome (delivered, failed, refused, skipped)."
    );
    metrics::describe_histogram!(
        "shopkeep_webhook_delivery_seconds",
        "Time an endpoint took to answer a delivery attempt."
    );
    metrics::describe_gauge!(
        "shopkeep_webhook_endpoints",
        "Outbound endpoints by state (enabled, disabled, failing)."
    );
}

/// Refreshes the endpoint-state gauges (called at `/metrics` scrape time).
pub async fn refresh_gauges(db: &Db) {
    if let Ok((enabled, disabled, failing)) = shopkeep_store::webhooks::endpoint_states(db).await {
        ::metrics::gauge!("shopkeep_webhook_endpoints", "state" => "enabled").set(enabled as f64);
        ::metrics::gauge!("shopkeep_webhook_endpoints", "state" => "disabled").set(disabled as f64);
        ::metrics::gauge!("shopkeep_webhook_endpoints", "state" => "failing").set(failing as f64);
    }
}
