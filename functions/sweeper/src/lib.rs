//! The sweeper (an EventBridge schedule, every minute): ends servers past their deadlines,
//! reconciles server records with ECS tasks, and tops up the warm pool. See
//! `switchboard::lifecycle::sweep`.

/// What this function reads from its environment besides its tables (`switchboard::init`
/// checks exactly this; template.yaml gives exactly this).
pub const NEEDS: &[switchboard::Need] = &[
    switchboard::Need::Ice,
    switchboard::Need::SignalingUrl,
    switchboard::Need::Sockets,
    switchboard::Need::SfuTasks,
    switchboard::Need::WarmRooms,
    switchboard::Need::StartTimeout,
    switchboard::Need::Sessions,
];

use serde_json::Value;
use switchboard::Deps;
use switchboard::lifecycle::{self, SweepReport};

#[tracing::instrument(skip_all)]
pub async fn handler(deps: &Deps, _event: Value) -> SweepReport {
    lifecycle::sweep(deps).await
}
