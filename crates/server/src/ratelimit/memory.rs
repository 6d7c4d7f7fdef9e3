//! The in-process backend: a log of failure times per key behind one mutex.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

// tokio's clock rather than std's so tests can pause and advance time instead of sleeping;
// outside a paused test runtime it is std's monotonic clock.
use tokio::time::Instant;

/// Past this many keys the map is swept before `window` has elapsed since the last sweep.
const SWEEP_KEYS: usize = 10_000;

pub(super) struct MemoryLimiter {
    limit: usize,
    window: Duration,
    state: Mutex<State>,
}

struct State {
    /// Failure times per key, oldest first; never more than `limit` of them.
    keys: HashMap<String, VecDeque<Instant>>,
    last_sweep: Instant,
    /// Size that triggers an early sweep. It grows with the live keys so that a flood of
    /// keys still inside the window does not make every access walk the whole map.
    sweep_above: usize,
}

impl MemoryLimiter {
    pub(super) fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            window,
            state: Mutex::new(State {
                keys: HashMap::new(),
                last_sweep: Instant::now(),
                sweep_above: SWEEP_KEYS,
            }),
        }
    }

    pub(super) fn limit(&self) -> usize {
        self.limit
    }

    pub(super) fn window(&self) -> Duration {
        self.window
    }

    /// How long until `key` may fail again, or `None` if it may fail now.
    pub(super) fn check(&self, key: &str) -> Option<Duration> {
        let now = Instant::now();
        let mut state = self.lock();
        state.maybe_sweep(now, self.window);
        let entries = state.keys.get_mut(key)?;
        prune(entries, now, self.window);
        if entries.is_empty() {
            state.keys.remove(key);
            return None;
        }
        if entries.len() < self.limit {
            return None;
        }
        // The key stays blocked until fewer than `limit` failures remain in the window,
        // that is until the `limit`-th newest one expires.
        let oldest = entries[entries.len() - self.limit];
        Some(
            self.window
                .saturating_sub(now.saturating_duration_since(oldest)),
        )
    }

    pub(super) fn record_failure(&self, key: &str) {
        let now = Instant::now();
        let mut state = self.lock();
        state.maybe_sweep(now, self.window);
        let entries = state.keys.entry(key.to_owned()).or_default();
        prune(entries, now, self.window);
        entries.push_back(now);
        // Only the newest `limit` failures decide when the key unblocks, so older ones are
        // dropped: memory per key stays bounded however hard a key is hammered.
        while entries.len() > self.limit {
            entries.pop_front();
        }
    }

    pub(super) fn clear(&self, key: &str) {
        self.lock().keys.remove(key);
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().keys.len()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic under the lock cannot leave the map in a state worse than stale entries,
        // which pruning repairs; refusing every later login would be worse.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn maybe_sweep(&mut self, now: Instant, window: Duration) {
        let due = now.saturating_duration_since(self.last_sweep) >= window;
        if !due && self.keys.len() <= self.sweep_above {
            return;
        }
        self.keys.retain(|_, entries| {
            prune(entries, now, window);
            !entries.is_empty()
        });
        self.last_sweep = now;
        self.sweep_above = SWEEP_KEYS.max(self.keys.len().saturating_mul(2));
    }
}

/// Drops failures that have left the window; entries are in time order, so only the front.
fn prune(entries: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while entries
        .front()
        .is_some_and(|&t| now.saturating_duration_since(t) >= window)
    {
        entries.pop_front();
    }
}
