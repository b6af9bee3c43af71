//! The sweeper (an EventBridge schedule, every minute): ends servers past their deadlines,
//! reconciles server records with ECS tasks, and tops up the warm pool. See
//! `switchboard::lifecycle::sweep`.

use serde_json::Value;
use switchboard::Deps;
use switchboard::lifecycle::{self, SweepReport};

#[tracing::instrument(skip_all)]
pub async fn handler(deps: &Deps, _event: Value) -> SweepReport {
    lifecycle::sweep(deps).await
}
