//! The limiter's behaviour on both backends. The Redis tests need a real Redis at
//! `TEST_REDIS_URL` (default `redis://127.0.0.1:6379`) and fail, not skip, without one.

use std::time::Duration;

use super::{FailureLimiter, redact_url, round_up_to_ms};

#[test]
fn credentials_in_a_redis_url_are_hidden_from_messages() {
    assert_eq!(
        redact_url("redis://127.0.0.1:6379/0"),
        "redis://127.0.0.1:6379/0"
    );
    assert_eq!(
        redact_url("redis://:hunter2@cache:6379"),
        "redis://***@cache:6379"
    );
    assert_eq!(
        redact_url("rediss://app:hunter2@cache/1"),
        "rediss://***@cache/1"
    );
    assert_eq!(
        redact_url("redis://cache?password=hunter2"),
        "redis://cache?***"
    );
    assert_eq!(redact_url("hunter2@cache"), "<unparsable redis url>");
}

#[test]
fn retry_after_is_never_zero_and_never_rounded_down() {
    assert_eq!(
        round_up_to_ms(Duration::from_nanos(1)),
        Duration::from_millis(1)
    );
    assert_eq!(round_up_to_ms(Duration::ZERO), Duration::from_millis(1));
    assert_eq!(
        round_up_to_ms(Duration::from_micros(1_001)),
        Duration::from_millis(2)
    );
    assert_eq!(
        round_up_to_ms(Duration::from_millis(7)),
        Duration::from_millis(7)
    );
}

/// Runs on tokio's paused clock: time moves only when a test advances it, so no test sleeps
/// and none depends on how busy the machine is.
mod memory_backend {
    use std::time::Duration;

    use tokio::time::advance;

    use super::FailureLimiter;

    const WINDOW: Duration = Duration::from_millis(300);
    const MS: Duration = Duration::from_millis(1);

    async fn fail(limiter: &FailureLimiter, key: &str, times: u32) {
        for _ in 0..times {
            limiter
                .record_failure(key)
                .await
                .expect("memory never fails");
        }
    }

    async fn wait(limiter: &FailureLimiter, key: &str) -> Option<Duration> {
        limiter.check(key).await.expect("memory never fails")
    }

    #[tokio::test(start_paused = true)]
    async fn five_failures_block_the_sixth_check_until_the_oldest_leaves_the_window() {
        let limiter = FailureLimiter::memory(5, WINDOW);
        for _ in 0..5 {
            assert_eq!(wait(&limiter, "alice").await, None);
            fail(&limiter, "alice", 1).await;
            advance(10 * MS).await;
        }
        let blocked = wait(&limiter, "alice")
            .await
            .expect("sixth attempt is blocked");
        assert!(blocked <= WINDOW);
        assert_eq!(blocked, 250 * MS, "the oldest failure is 50 ms old");
        advance(249 * MS).await;
        assert_eq!(wait(&limiter, "alice").await, Some(MS));
        advance(MS).await;
        assert_eq!(wait(&limiter, "alice").await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_different_key_is_unaffected() {
        let limiter = FailureLimiter::memory(5, WINDOW);
        fail(&limiter, "alice", 5).await;
        assert!(wait(&limiter, "alice").await.is_some());
        assert_eq!(wait(&limiter, "bob").await, None);
        assert_eq!(wait(&limiter, "203.0.113.7").await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_is_allowed_again_after_the_window_passes() {
        let limiter = FailureLimiter::memory(5, WINDOW);
        fail(&limiter, "alice", 5).await;
        assert_eq!(wait(&limiter, "alice").await, Some(WINDOW));
        advance(WINDOW).await;
        assert_eq!(wait(&limiter, "alice").await, None);
        fail(&limiter, "alice", 4).await;
        assert_eq!(
            wait(&limiter, "alice").await,
            None,
            "the expired failures no longer count"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn checks_alone_never_consume() {
        let limiter = FailureLimiter::memory(5, WINDOW);
        for _ in 0..100 {
            assert_eq!(wait(&limiter, "alice").await, None);
        }
        assert_eq!(limiter.len(), 0, "a check does not even create the key");
        fail(&limiter, "alice", 4).await;
        for _ in 0..100 {
            assert_eq!(wait(&limiter, "alice").await, None);
        }
        fail(&limiter, "alice", 1).await;
        assert!(wait(&limiter, "alice").await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn failures_past_the_limit_keep_the_key_blocked_until_the_fifth_newest_expires() {
        let limiter = FailureLimiter::memory(5, WINDOW);
        for _ in 0..8 {
            fail(&limiter, "alice", 1).await;
            advance(10 * MS).await;
        }
        // Failures at 0..=70 ms, now 80 ms: fewer than five remain once the one at 30 ms expires.
        assert_eq!(wait(&limiter, "alice").await, Some(250 * MS));
        advance(250 * MS).await;
        assert_eq!(wait(&limiter, "alice").await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_rounded_up_to_whole_milliseconds() {
        let limiter = FailureLimiter::memory(5, WINDOW);
        fail(&limiter, "alice", 5).await;
        advance(Duration::from_micros(100_500)).await;
        assert_eq!(wait(&limiter, "alice").await, Some(200 * MS));
        advance(Duration::from_micros(199_499)).await;
        assert_eq!(
            wait(&limiter, "alice").await,
            Some(MS),
            "1 µs left still says 1 ms"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn clones_share_one_count() {
        let limiter = FailureLimiter::memory(5, WINDOW);
        let other = limiter.clone();
        fail(&limiter, "alice", 3).await;
        fail(&other, "alice", 2).await;
        assert!(wait(&limiter, "alice").await.is_some());
        assert!(wait(&other, "alice").await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn clear_forgets_a_key() {
        let limiter = FailureLimiter::memory(5, WINDOW);
        fail(&limiter, "alice", 5).await;
        fail(&limiter, "bob", 5).await;
        limiter.clear("alice").await.expect("memory never fails");
        assert_eq!(wait(&limiter, "alice").await, None);
        assert!(wait(&limiter, "bob").await.is_some());
        fail(&limiter, "alice", 4).await;
        assert_eq!(wait(&limiter, "alice").await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_limit_of_zero_blocks_after_the_first_failure() {
        let limiter = FailureLimiter::memory(0, WINDOW);
        assert_eq!(wait(&limiter, "alice").await, None);
        fail(&limiter, "alice", 1).await;
        assert_eq!(wait(&limiter, "alice").await, Some(WINDOW));
    }

    #[tokio::test(start_paused = true)]
    async fn the_periodic_sweep_drops_keys_whose_failures_all_expired() {
        let limiter = FailureLimiter::memory(5, WINDOW);
        for i in 0..100 {
            fail(&limiter, &format!("user-{i}"), 1).await;
        }
        assert_eq!(limiter.len(), 100);
        advance(WINDOW).await;
        // Any access to any key sweeps once a window has passed since the last sweep.
        assert_eq!(wait(&limiter, "someone-else").await, None);
        assert_eq!(limiter.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_map_past_ten_thousand_keys_is_swept_before_the_window_comes_round() {
        let limiter = FailureLimiter::memory(5, WINDOW);
        advance(150 * MS).await;
        for i in 0..4_000 {
            fail(&limiter, &format!("old-{i}"), 1).await;
        }
        advance(150 * MS).await;
        // A window after creation: this sweeps, but the old keys are still live (until 450 ms).
        assert_eq!(wait(&limiter, "nobody").await, None);
        assert_eq!(limiter.len(), 4_000);
        // 480 ms: the old keys have expired and the next periodic sweep is not due until 600 ms.
        advance(180 * MS).await;
        for i in 0..6_002 {
            fail(&limiter, &format!("new-{i}"), 1).await;
        }
        // Inserting new-6001 found 10,001 keys and swept the 4,000 expired ones; no live key went.
        assert_eq!(limiter.len(), 6_002);
        assert_eq!(wait(&limiter, "new-0").await, None);
    }
}

/// Against a real Redis; each test has its own key prefix so tests can run in parallel.
mod redis_backend {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use tokio::io::copy_bidirectional;
    use tokio::net::{TcpListener, TcpSocket, TcpStream};
    use tokio::sync::watch;
    use tokio::task::{JoinHandle, JoinSet};
    use uuid::Uuid;

    use super::{FailureLimiter, redact_url};
    use crate::ratelimit::LimiterUnavailable;

    /// The brief's bound on how long a login may wait for a Redis that is gone.
    const FAIL_FAST: Duration = Duration::from_secs(3);

    fn redis_url() -> String {
        std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
    }

    fn unique_prefix() -> String {
        format!("shopkeep-test:ratelimit:{}:", Uuid::now_v7())
    }

    async fn limiter_at(url: &str, prefix: &str, window: Duration) -> FailureLimiter {
        FailureLimiter::redis(url, prefix, 5, window)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "these tests need a Redis at {} (TEST_REDIS_URL): {e:#}",
                    redact_url(url)
                )
            })
    }

    async fn limiter(prefix: &str, window: Duration) -> FailureLimiter {
        limiter_at(&redis_url(), prefix, window).await
    }

    async fn fail(limiter: &FailureLimiter, key: &str, times: u32) {
        for _ in 0..times {
            limiter.record_failure(key).await.expect("redis is up");
        }
    }

    async fn wait(limiter: &FailureLimiter, key: &str) -> Option<Duration> {
        limiter.check(key).await.expect("redis is up")
    }

    async fn raw_connection() -> redis::aio::MultiplexedConnection {
        redis::Client::open(redis_url())
            .expect("TEST_REDIS_URL parses")
            .get_multiplexed_async_connection()
            .await
            .expect("redis is up")
    }

    #[tokio::test]
    async fn five_failures_block_the_sixth_check_with_a_retry_after_within_the_window() {
        let window = Duration::from_secs(1);
        let limiter = limiter(&unique_prefix(), window).await;
        for _ in 0..5 {
            assert_eq!(wait(&limiter, "alice").await, None);
            fail(&limiter, "alice", 1).await;
        }
        let blocked = wait(&limiter, "alice")
            .await
            .expect("sixth attempt is blocked");
        assert!(blocked > Duration::ZERO && blocked <= window, "{blocked:?}");
        assert_eq!(
            blocked.subsec_nanos() % 1_000_000,
            0,
            "whole ms: {blocked:?}"
        );
    }

    #[tokio::test]
    async fn a_different_key_is_unaffected() {
        let limiter = limiter(&unique_prefix(), Duration::from_secs(1)).await;
        fail(&limiter, "alice", 5).await;
        assert!(wait(&limiter, "alice").await.is_some());
        assert_eq!(wait(&limiter, "bob").await, None);
    }

    #[tokio::test]
    async fn a_key_is_allowed_again_after_the_window_passes() {
        let limiter = limiter(&unique_prefix(), Duration::from_millis(500)).await;
        fail(&limiter, "alice", 5).await;
        let blocked = wait(&limiter, "alice").await.expect("blocked");
        tokio::time::sleep(blocked + Duration::from_millis(20)).await;
        assert_eq!(wait(&limiter, "alice").await, None);
        fail(&limiter, "alice", 4).await;
        assert_eq!(
            wait(&limiter, "alice").await,
            None,
            "the expired failures no longer count"
        );
    }

    #[tokio::test]
    async fn checks_alone_never_consume() {
        let limiter = limiter(&unique_prefix(), Duration::from_secs(1)).await;
        for _ in 0..20 {
            assert_eq!(wait(&limiter, "alice").await, None);
        }
        fail(&limiter, "alice", 4).await;
        for _ in 0..20 {
            assert_eq!(wait(&limiter, "alice").await, None);
        }
        fail(&limiter, "alice", 1).await;
        assert!(wait(&limiter, "alice").await.is_some());
    }

    #[tokio::test]
    async fn two_instances_on_the_same_redis_share_counts() {
        let prefix = unique_prefix();
        let first = limiter(&prefix, Duration::from_secs(1)).await;
        let second = limiter(&prefix, Duration::from_secs(1)).await;
        fail(&first, "alice", 3).await;
        fail(&second, "alice", 2).await;
        assert!(wait(&first, "alice").await.is_some());
        assert!(wait(&second, "alice").await.is_some());
        let elsewhere = limiter(&unique_prefix(), Duration::from_secs(1)).await;
        assert_eq!(
            wait(&elsewhere, "alice").await,
            None,
            "another prefix is another count"
        );
    }

    #[tokio::test]
    async fn clear_forgets_a_key() {
        let prefix = unique_prefix();
        let limiter = limiter(&prefix, Duration::from_secs(1)).await;
        fail(&limiter, "alice", 5).await;
        fail(&limiter, "bob", 5).await;
        limiter.clear("alice").await.expect("redis is up");
        assert_eq!(wait(&limiter, "alice").await, None);
        assert!(wait(&limiter, "bob").await.is_some());
        let exists: bool = redis::cmd("EXISTS")
            .arg(format!("{prefix}alice"))
            .query_async(&mut raw_connection().await)
            .await
            .expect("redis is up");
        assert!(!exists);
    }

    #[tokio::test]
    async fn a_key_holds_at_most_limit_failures_and_expires_with_the_window() {
        let prefix = unique_prefix();
        let limiter = limiter(&prefix, Duration::from_secs(1)).await;
        assert_eq!(wait(&limiter, "nobody").await, None);
        fail(&limiter, "alice", 8).await;
        let mut raw = raw_connection().await;
        let nobody: bool = redis::cmd("EXISTS")
            .arg(format!("{prefix}nobody"))
            .query_async(&mut raw)
            .await
            .expect("redis is up");
        assert!(!nobody, "a check creates no key");
        let count: u64 = redis::cmd("ZCARD")
            .arg(format!("{prefix}alice"))
            .query_async(&mut raw)
            .await
            .expect("redis is up");
        assert_eq!(count, 5);
        let ttl_ms: i64 = redis::cmd("PTTL")
            .arg(format!("{prefix}alice"))
            .query_async(&mut raw)
            .await
            .expect("redis is up");
        assert!(ttl_ms > 0 && ttl_ms <= 1_000, "{ttl_ms}");
    }

    #[tokio::test]
    async fn a_limiter_pointed_at_a_closed_port_fails_to_build_quickly_and_clearly() {
        let started = Instant::now();
        let err = FailureLimiter::redis(
            "redis://:hunter2@127.0.0.1:1",
            &unique_prefix(),
            5,
            Duration::from_secs(1),
        )
        .await
        .expect_err("nothing listens on port 1");
        assert!(
            started.elapsed() < FAIL_FAST,
            "took {:?}",
            started.elapsed()
        );
        let message = format!("{err:#}");
        assert!(
            message.contains("cannot connect to redis at redis://***@127.0.0.1:1"),
            "{message}"
        );
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[tokio::test]
    async fn a_limiter_whose_redis_goes_away_fails_closed_quickly_and_recovers_when_it_returns() {
        let mut proxy = Proxy::start(&redis_url()).await;
        let limiter = limiter_at(&proxy.url, &unique_prefix(), Duration::from_secs(30)).await;
        fail(&limiter, "alice", 1).await;

        proxy.stop().await;
        for _ in 0..3 {
            let outcome = timed(limiter.check("alice")).await;
            assert!(outcome.is_err(), "must fail closed: {outcome:?}");
        }
        let outcome = timed(limiter.record_failure("alice")).await;
        assert!(outcome.is_err(), "must fail closed: {outcome:?}");

        proxy.restart().await;
        assert_eq!(recovered(&limiter, "alice").await, None);
        fail(&limiter, "alice", 4).await;
        assert!(
            wait(&limiter, "alice").await.is_some(),
            "the failure from before the outage still counts"
        );
    }

    #[tokio::test]
    async fn a_limiter_whose_redis_stops_answering_fails_closed_quickly_and_recovers() {
        let proxy = Proxy::start(&redis_url()).await;
        let limiter = limiter_at(&proxy.url, &unique_prefix(), Duration::from_secs(30)).await;
        fail(&limiter, "alice", 1).await;

        // The connection stays open and silent: only a timeout can notice this.
        proxy.freeze(true);
        for _ in 0..2 {
            let outcome = timed(limiter.check("alice")).await;
            assert!(outcome.is_err(), "must fail closed: {outcome:?}");
        }

        proxy.freeze(false);
        assert_eq!(recovered(&limiter, "alice").await, None);
        fail(&limiter, "alice", 4).await;
        assert!(wait(&limiter, "alice").await.is_some());
    }

    /// Awaits a limiter call and asserts it came back within [`FAIL_FAST`].
    async fn timed<T>(
        call: impl Future<Output = Result<T, LimiterUnavailable>>,
    ) -> Result<T, LimiterUnavailable> {
        let started = Instant::now();
        let outcome = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("the limiter hung");
        assert!(
            started.elapsed() < FAIL_FAST,
            "took {:?}",
            started.elapsed()
        );
        outcome
    }

    /// Checks until Redis answers again; reconnecting takes a call or two.
    async fn recovered(limiter: &FailureLimiter, key: &str) -> Option<Duration> {
        let deadline = Instant::now() + Duration::from_secs(8);
        loop {
            match limiter.check(key).await {
                Ok(wait) => return wait,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("the limiter did not reconnect: {e}"),
            }
        }
    }

    /// A TCP proxy in front of the test Redis that can vanish (connections closed, port refused)
    /// or freeze (connections held open, nothing forwarded) without touching the real server.
    struct Proxy {
        addr: SocketAddr,
        upstream: String,
        /// The test Redis URL with the proxy's address in place of the server's.
        url: String,
        frozen: watch::Sender<bool>,
        task: Option<JoinHandle<()>>,
    }

    impl Proxy {
        async fn start(redis_url: &str) -> Self {
            let (scheme, rest) = redis_url
                .split_once("://")
                .expect("TEST_REDIS_URL is a redis://host:port URL");
            let end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(end);
            let (userinfo, host) = match authority.rsplit_once('@') {
                Some((userinfo, host)) => (format!("{userinfo}@"), host),
                None => (String::new(), authority),
            };
            let upstream = if host.ends_with(']') || !host.contains(':') {
                format!("{host}:6379")
            } else {
                host.to_owned()
            };
            let listener = listen("127.0.0.1:0".parse().expect("valid address"));
            let addr = listener.local_addr().expect("bound");
            let (frozen, _) = watch::channel(false);
            let task = tokio::spawn(serve(listener, upstream.clone(), frozen.subscribe()));
            Self {
                addr,
                upstream,
                url: format!("{scheme}://{userinfo}{addr}{tail}"),
                frozen,
                task: Some(task),
            }
        }

        async fn stop(&mut self) {
            if let Some(task) = self.task.take() {
                task.abort();
                // Awaiting the aborted task means its listener and connections are closed.
                let _ = task.await;
            }
        }

        async fn restart(&mut self) {
            self.stop().await;
            let listener = listen(self.addr);
            self.task = Some(tokio::spawn(serve(
                listener,
                self.upstream.clone(),
                self.frozen.subscribe(),
            )));
        }

        fn freeze(&self, frozen: bool) {
            self.frozen.send_replace(frozen);
        }
    }

    impl Drop for Proxy {
        fn drop(&mut self) {
            if let Some(task) = self.task.take() {
                task.abort();
            }
        }
    }

    /// SO_REUSEADDR so a restarted proxy gets its old port back despite TIME_WAIT sockets.
    fn listen(addr: SocketAddr) -> TcpListener {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("reuseaddr");
        socket.bind(addr).expect("bind proxy port");
        socket.listen(64).expect("listen")
    }

    async fn serve(listener: TcpListener, upstream: String, frozen: watch::Receiver<bool>) {
        // Dropping the set (when the task is aborted) aborts every connection, closing them.
        let mut connections = JoinSet::new();
        while let Ok((inbound, _)) = listener.accept().await {
            while connections.try_join_next().is_some() {}
            connections.spawn(pipe(inbound, upstream.clone(), frozen.clone()));
        }
    }

    async fn pipe(mut inbound: TcpStream, upstream: String, mut frozen: watch::Receiver<bool>) {
        if frozen.wait_for(|frozen| !*frozen).await.is_err() {
            return;
        }
        let Ok(mut outbound) = TcpStream::connect(&upstream).await else {
            return;
        };
        let froze = tokio::select! {
            _ = copy_bidirectional(&mut inbound, &mut outbound) => false,
            changed = frozen.wait_for(|frozen| *frozen) => changed.is_ok(),
        };
        if froze {
            // Keep both sockets open and silent for good, like a host that went dark.
            std::future::pending::<()>().await;
        }
    }
}
