//! One way to tell the time. Production reads the system clock; tests pin and advance a
//! manual clock so expiry is tested without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// A clock that stands still at `epoch_seconds` until advanced.
    pub fn manual(epoch_seconds: i64) -> Self {
        Self {
            manual: Some(Arc::new(AtomicI64::new(epoch_seconds))),
        }
    }

    /// Epoch seconds.
    pub fn now(&self) -> i64 {
        match &self.manual {
            Some(t) => t.load(Ordering::SeqCst),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or_default(),
        }
    }

    /// Epoch milliseconds (a manual clock's seconds, times 1000).
    pub fn now_millis(&self) -> i64 {
        match &self.manual {
            Some(t) => t.load(Ordering::SeqCst) * 1000,
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or_default(),
        }
    }

    /// Moves a manual clock forward; a system clock ignores it.
    pub fn advance(&self, seconds: i64) {
        if let Some(t) = &self.manual {
            t.fetch_add(seconds, Ordering::SeqCst);
        }
    }

    /// The TTL attribute value for something that lives `seconds` from now.
    pub fn expiry_in(&self, seconds: i64) -> i64 {
        self.now() + seconds
    }
}
