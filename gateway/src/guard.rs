//! What keeps the provider side of matches within its limits under any
//! concurrency: one answer at a time per (requester, contract, subject), so a
//! budget is checked and spent atomically; and each requester's volume under
//! each contract (a rolling minute and the calendar day), so no requester can
//! sweep a population even when every subject's budget holds.
//!
//! The day's count survives restarts: the ledger counts every access-log entry
//! it writes under its (requester, contract, day) in the same batch
//! ([`crate::ledger::Ledger::access_volume`]); the minute's window is in
//! memory. Reservations are taken before the access log is written and given
//! back if the write fails, so concurrent requests cannot overshoot a cap.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash as _, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use proofs::subject::SubjectRef;
use regions::Volume;
use tokio::sync::{Mutex as AsyncMutex, MutexGuard};

use crate::ledger::Ledger;

/// Stripes of the per-(requester, contract, subject) lock: unrelated keys
/// share a stripe with probability 1/1024, which only serialises them.
const STRIPES: usize = 1024;
/// Share of the daily cap from which each request logs a warning.
const WARN_AT_PERCENT: u64 = 80;
/// One minute, in ms.
const MINUTE_MS: u64 = 60_000;
/// One day, in ms.
const DAY_MS: u64 = 86_400_000;
/// Hours east of UTC for calendar days (China Standard Time).
pub const TZ_OFFSET_MS: u64 = 8 * 3_600_000;

/// The calendar day (UTC+8) of `now_ms`, as days since 1970-01-01.
pub fn day_of(now_ms: u64) -> u32 {
    u32::try_from(now_ms.saturating_add(TZ_OFFSET_MS) / DAY_MS).unwrap_or(u32::MAX)
}

/// Why a request was refused for volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeRefusal {
    /// More than `per_minute` in the last 60 s.
    Minute {
        /// The limit.
        limit: u32,
    },
    /// The day's cap is reached.
    Day {
        /// The limit.
        limit: u32,
    },
}

impl VolumeRefusal {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            VolumeRefusal::Minute { .. } => "match.rate_limited",
            VolumeRefusal::Day { .. } => "match.daily_cap",
        }
    }
    /// In words.
    pub fn message(&self, contract: &str) -> String {
        match self {
            VolumeRefusal::Minute { limit } => format!(
                "more than {limit} requests a minute under contract `{contract}`; retry later"
            ),
            VolumeRefusal::Day { limit } => {
                format!("the daily cap of {limit} requests under contract `{contract}` is reached")
            }
        }
    }
}

#[derive(Debug, Default)]
struct Window {
    /// The calendar day `today` counts.
    day: u32,
    /// Requests counted today: written plus reserved.
    today: u64,
    /// Whether `today` was read from the ledger for `day`.
    loaded: bool,
    /// Times of this minute's requests (written or reserved).
    recent: VecDeque<u64>,
    /// Volume refusals since start.
    refused: u64,
    /// The day's cap (for the metrics).
    cap: u32,
}

/// Locks and volume windows of one gateway's provider side.
pub struct MatchGuards {
    stripes: Vec<AsyncMutex<()>>,
    volume: Arc<Mutex<HashMap<(String, String), Window>>>,
}

impl Default for MatchGuards {
    fn default() -> Self {
        MatchGuards {
            stripes: (0..STRIPES).map(|_| AsyncMutex::new(())).collect(),
            volume: Arc::default(),
        }
    }
}

/// A volume reservation: given back on drop unless [`Reservation::keep`] is called.
pub struct Reservation {
    volume: Arc<Mutex<HashMap<(String, String), Window>>>,
    key: (String, String),
    at_ms: u64,
    kept: bool,
}

impl Reservation {
    /// The access log was written: the reservation is now counted for good.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let mut m = self.volume.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(w) = m.get_mut(&self.key) {
            if w.day == day_of(self.at_ms) {
                w.today = w.today.saturating_sub(1);
            }
            if let Some(i) = w.recent.iter().rposition(|t| *t == self.at_ms) {
                w.recent.remove(i);
            }
        }
    }
}

impl MatchGuards {
    /// Waits for the lock of (requester, contract, subject); holding it, a
    /// request's budget check and its access-log write cannot interleave with
    /// another's for the same key.
    pub async fn subject_lock(
        &self,
        requester: &str,
        contract: &str,
        subject: &SubjectRef,
    ) -> MutexGuard<'_, ()> {
        let mut h = DefaultHasher::new();
        requester.hash(&mut h);
        contract.hash(&mut h);
        subject.0.0.hash(&mut h);
        let i = (h.finish() % STRIPES as u64) as usize;
        self.stripes[i].lock().await
    }

    /// Reserves one request of `requester` under `contract` at `now_ms`, or
    /// refuses it when the rolling minute or the day is full. The day's
    /// count is read from the ledger the first time a day is seen.
    pub fn reserve(
        &self,
        ledger: &Ledger,
        requester: &str,
        contract: &str,
        limit: Volume,
        now_ms: u64,
    ) -> Result<Reservation, VolumeRefusal> {
        let day = day_of(now_ms);
        let key = (requester.to_owned(), contract.to_owned());
        let mut m = self.volume.lock().unwrap_or_else(PoisonError::into_inner);
        let w = m.entry(key.clone()).or_default();
        w.cap = limit.per_day;
        if w.day != day || !w.loaded {
            // A failed read counts as a full day: fail closed.
            w.today = ledger
                .access_volume(requester, contract, day)
                .unwrap_or(u64::MAX);
            w.day = day;
            w.loaded = true;
        }
        while w.recent.front().is_some_and(|t| *t + MINUTE_MS <= now_ms) {
            w.recent.pop_front();
        }
        if w.today >= u64::from(limit.per_day) {
            w.refused += 1;
            tracing::warn!(
                requester,
                contract,
                cap = limit.per_day,
                "match: requester reached its daily cap; refused"
            );
            return Err(VolumeRefusal::Day {
                limit: limit.per_day,
            });
        }
        if w.recent.len() >= limit.per_minute as usize {
            w.refused += 1;
            tracing::warn!(
                requester,
                contract,
                per_minute = limit.per_minute,
                "match: requester over its rate; refused"
            );
            return Err(VolumeRefusal::Minute {
                limit: limit.per_minute,
            });
        }
        w.today += 1;
        w.recent.push_back(now_ms);
        if w.today * 100 >= u64::from(limit.per_day) * WARN_AT_PERCENT {
            tracing::warn!(
                requester,
                contract,
                today = w.today,
                cap = limit.per_day,
                "match: requester nears its daily cap"
            );
        }
        Ok(Reservation {
            volume: self.volume.clone(),
            key,
            at_ms: now_ms,
            kept: false,
        })
    }

    /// Prometheus lines: each (requester, contract)'s use of its day and its refusals.
    pub fn render(&self, out: &mut String) {
        let m = self.volume.lock().unwrap_or_else(PoisonError::into_inner);
        out.push_str("# HELP tongban_match_volume_today Requests answered or reserved today per requester and contract (the daily cap is in _cap).\n");
        out.push_str("# TYPE tongban_match_volume_today gauge\n");
        for ((r, c), w) in m.iter() {
            out.push_str(&format!(
                "tongban_match_volume_today{{requester=\"{r}\",contract=\"{c}\"}} {}\n",
                w.today.min(u64::from(u32::MAX))
            ));
        }
        out.push_str("# TYPE tongban_match_volume_cap gauge\n");
        for ((r, c), w) in m.iter() {
            out.push_str(&format!(
                "tongban_match_volume_cap{{requester=\"{r}\",contract=\"{c}\"}} {}\n",
                w.cap
            ));
        }
        out.push_str("# TYPE tongban_match_volume_refused_total counter\n");
        for ((r, c), w) in m.iter() {
            out.push_str(&format!(
                "tongban_match_volume_refused_total{{requester=\"{r}\",contract=\"{c}\"}} {}\n",
                w.refused
            ));
        }
    }
}
