//! The jobs shopkeep itself runs: retention (a schedule) and the order-decision hook.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use shopkeep_domain::{ShopId, Timestamp, UserId};
use shopkeep_store::notifications::{self, NewNotification};
use shopkeep_store::{ShopScope, jobs as store, orders, sessions, tokens};
use uuid::Uuid;

use crate::{Backoff, JobContext, JobError, JobResult, Jobs, KindPolicy, Registry, ScheduleSpec};

/// Deletes what has outlived its use: expired refresh tokens and deny-list entries, expired web
/// sessions kept in the database, finished jobs past their keep time, old counters.
pub const RETENTION: &str = "shopkeep.retention";
/// Runs after an order is approved or rejected: writes the customer's notice (and, later,
/// email and webhooks hang off the same job).
pub const ORDER_DECISION: &str = "orders.decision";
/// Does nothing and succeeds: proves a deployment's enqueue-claim-complete path end to end (the
/// benchmarks measure the queue itself with it).
pub const NOOP: &str = "shopkeep.noop";
/// The queue of shopkeep's housekeeping.
pub const MAINTENANCE_QUEUE: &str = "maintenance";
/// When retention runs: hourly, at minute 17.
pub const RETENTION_CRON: &str = "17 * * * *";

/// Arguments of [`ORDER_DECISION`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderDecision {
    /// The order.
    pub order_id: Uuid,
    /// `APPROVED` or `REJECTED`.
    pub status: String,
}

/// Registers shopkeep's own kinds.
pub fn register(registry: &mut Registry) {
    registry.register(
        RETENTION,
        KindPolicy {
            queue: MAINTENANCE_QUEUE.into(),
            priority: 9,
            max_attempts: 3,
            timeout: Duration::from_secs(600),
            ..KindPolicy::default()
        },
        |ctx: JobContext, _: serde_json::Value| async move {
            let now = Timestamp::now().0;
            let tokens = tokens::prune_expired(ctx.db()).await?;
            let sessions = sessions::prune(ctx.db(), now).await?;
            ctx.progress(50).await?;
            let jobs = store::prune(ctx.db(), now, now - 8 * 86_400_000_000).await?;
            Ok(Some(serde_json::json!({
                "tokens_removed": tokens,
                "sessions_removed": sessions,
                "jobs_removed": jobs,
            })))
        },
    );
    registry.register(
        NOOP,
        KindPolicy::default(),
        |_: JobContext, _: serde_json::Value| async { Ok(None) },
    );
    registry.register(
        ORDER_DECISION,
        KindPolicy {
            queue: "default".into(),
            priority: 3,
            max_attempts: 10,
            timeout: Duration::from_secs(30),
            backoff: Backoff {
                base: Duration::from_secs(2),
                max: Duration::from_secs(600),
            },
            rate: None,
        },
        order_decision,
    );
}

async fn order_decision(ctx: JobContext, args: OrderDecision) -> JobResult {
    let shop = ctx
        .shop_id
        .ok_or_else(|| JobError::fatal("an order decision job carries its shop"))?;
    let scope = ShopScope::verified(ShopId(shop));
    let Some(order) = orders::get(ctx.db(), scope, args.order_id).await? else {
        // Deleted since (its shop went away): nothing to tell anyone.
        return Ok(Some(
            serde_json::json!({ "notified": false, "why": "order gone" }),
        ));
    };
    let Some(customer) = order.customer_id else {
        return Ok(Some(
            serde_json::json!({ "notified": false, "why": "no customer" }),
        ));
    };
    let short = &args.order_id.simple().to_string()[..8];
    let (kind, subject) = match args.status.as_str() {
        "APPROVED" => ("order.approved", format!("Your order {short} was approved")),
        "REJECTED" => ("order.rejected", format!("Your order {short} was rejected")),
        other => return Err(JobError::fatal(format!("not a decision: {other}"))),
    };
    let body = match order.reason.as_deref() {
        Some(r) if !r.is_empty() => format!("{subject}. Reason: {r}"),
        _ => format!("{subject}."),
    };
    let written = notifications::insert_once(
        ctx.db(),
        scope,
        &NewNotification {
            id: ctx.id,
            user: UserId(customer),
            kind: kind.into(),
            subject,
            body,
            resource_id: Some(args.order_id.to_string()),
            created_at: Timestamp::now().0,
        },
    )
    .await?;
    Ok(Some(
        serde_json::json!({ "notified": true, "new": written }),
    ))
}

impl Jobs {
    /// Stores shopkeep's own schedules (retention).
    pub async fn define_builtin_schedules(&self) -> Result<(), crate::ScheduleError> {
        self.define_schedule(&ScheduleSpec {
            name: RETENTION.into(),
            cron: RETENTION_CRON.into(),
            timezone: "UTC".into(),
            kind: RETENTION.into(),
            args: serde_json::json!({}),
            queue: None,
        })
        .await
    }
}
